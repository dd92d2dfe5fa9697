"""Command line: ``rotator plan|run|serve|demo|restore-secrets|migrate-store|config|status``.

Exit codes: 0 done, 1 some actions failed, 2 bad configuration or usage (nothing
touched), 3 a safety brake refused the plan (nothing touched). Every subcommand's
``--help`` says what it reads, what it needs and which of these it returns.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import structlog

from rotator import __version__, logs
from rotator.concurrency import Progress
from rotator.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_REFUSED, ConfigError
from rotator.jobs import JOB_NAMES, setting_key
from rotator.settings import Settings, effective_settings, load_settings_with_sources, service_link_names

log = structlog.get_logger("rotator.cli")

# --- help ------------------------------------------------------------------------------------

EXIT_MEANINGS: Mapping[int, str] = {
    EXIT_OK: "done, or nothing to do",
    EXIT_FAILED: "some actions or lookups failed (the others were carried out; the output says which)",
    EXIT_CONFIG: "bad configuration or usage, or an AWS account not allowed: nothing was touched",
    EXIT_REFUSED: "a safety brake refused the plan: nothing was touched",
}
NEEDS_HOSTNAME = (
    "ROTATOR_HOSTNAME (or HOSTNAME in the Gen3Workflow config file named by ROTATOR_GEN3WORKFLOW_CONFIG);"
    " AWS credentials and AWS_REGION from the standard AWS environment (IRSA, AWS_PROFILE, ...)."
    " `rotator config` shows every setting and where it came from."
)
READS_JOBS = (
    "IAM users tagged name=gen3wf-<host> and their access keys (GetAccountAuthorizationDetails, the credential"
    " report, ListAccessKeys, GetAccountSummary); which key ids the bot-key store holds; Secrets Manager secret"
    " names and dates (never values); the run-status API of ROTATOR_RUN_SECRETS__STATUS_SOURCE."
)
NEEDS_JOBS = NEEDS_HOSTNAME + (
    " run-secrets with ROTATOR_RUN_SECRETS__STATUS_SOURCE=seqera or tes also needs that source's __URL and"
    " credentials; bot-keys with ROTATOR_BOT_KEYS__STORE=gen3workflow-db needs the database settings."
)


def epilog(*, reads: str, needs: str, codes: Mapping[int, str]) -> str:
    """What a subcommand reads, which settings it needs, and its exit codes, for ``--help``."""

    def section(title: str, text: str) -> list[str]:
        return [title, *paragraph(text, indent="  ")]

    lines = [*section("reads:", reads), "", *section("needs:", needs), "", "exit codes:"]
    for code, meaning in codes.items():
        lines += paragraph(meaning, indent=f"  {code}  ", subsequent="     ")
    return "\n".join(lines)


def paragraph(text: str, *, indent: str = "", subsequent: str | None = None) -> list[str]:
    """``text`` wrapped for ``--help`` (78 columns), never inside a setting's name."""
    return textwrap.wrap(text, 78, initial_indent=indent, subsequent_indent=indent if subsequent is None else subsequent,
                         break_on_hyphens=False)


def exit_codes(*codes: int, meaning: Mapping[int, str] | None = None) -> dict[int, str]:
    """``codes`` with what each means for one command: ``meaning``'s words, else the usual ones."""
    return {code: (meaning or {}).get(code, EXIT_MEANINGS[code]) for code in codes}


def verbosity(parser: argparse.ArgumentParser, *, default: object) -> None:
    """``-q``/``-v``; before or after the subcommand (there ``default`` is SUPPRESS: no overwriting)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="log_level", action="store_const", const="warning", default=default,
                       help="log warnings and errors only (and no progress line)")
    group.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="debug", default=default,
                       help="log debug events too")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotator",
        description="Key rotation and cleanup for Gen3Workflow deployments on AWS.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join([
            *paragraph("Settings come from ROTATOR_* environment variables (`rotator config` shows them; see the README)."
                       " Logs go to stderr: readable lines on a terminal, JSON lines otherwise (ROTATOR_LOG__FORMAT="
                       "json|console decides). `rotator COMMAND --help` says what each command reads, needs and returns."),
            "", "exit codes:",
            *(line for code, meaning in EXIT_MEANINGS.items()
              for line in paragraph(meaning, indent=f"  {code}  ", subsequent="     ")),
        ]),
    )
    parser.add_argument("--version", action="version", version=f"rotator {__version__}")
    verbosity(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, *, help: str, reads: str, needs: str, codes: Mapping[int, str], description: str | None = None):
        p = sub.add_parser(
            name, help=help, description="\n".join(paragraph(description or help)),
            epilog=epilog(reads=reads, needs=needs, codes=codes), formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        verbosity(p, default=argparse.SUPPRESS)
        return p

    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--job",
            action="append",
            choices=JOB_NAMES,
            help="job to run (repeatable); default: all enabled jobs",
        )
        p.add_argument("--output", choices=("text", "json"), default="text", help="plan/outcome format on stdout")
        p.add_argument("--user", action="append", metavar="NAME", help="limit the key jobs to this IAM user (repeatable)")

    p_plan = command(
        "plan", help="show what would change; changes nothing", reads=READS_JOBS + " Changes nothing.", needs=NEEDS_JOBS,
        codes=exit_codes(EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED, meaning={
            EXIT_OK: "the plan was made (nothing to do, or see the actions)",
            EXIT_FAILED: "some lookups failed: those users or secrets are left out of the plan",
            EXIT_REFUSED: "a safety brake would refuse this plan (run would change nothing)",
        }),
    )
    job_options(p_plan)
    p_run = command(
        "run", help="run jobs once (dry-run unless --apply or ROTATOR_DRY_RUN=false)",
        reads=READS_JOBS + " With --apply (or ROTATOR_DRY_RUN=false) it then deletes and creates access keys,"
        " writes the bot-key store and deletes run secrets; without, it changes nothing.",
        needs=NEEDS_JOBS, codes=exit_codes(EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REFUSED),
    )
    job_options(p_run)
    p_run.add_argument("--apply", action="store_true", help="change things (overrides ROTATOR_DRY_RUN)")
    command(
        "serve", help="run jobs on their schedules; serve /metrics, /healthz, /readyz",
        reads="What `rotator run` reads, for each job on its ROTATOR_SCHEDULE__<JOB> crontab (UTC); changes things only"
        " with ROTATOR_DRY_RUN=false. Serves /metrics, /healthz and /readyz on ROTATOR_METRICS__BIND_ADDRESS and"
        " ROTATOR_METRICS__PORT (default 9102).",
        needs=NEEDS_JOBS,
        codes=exit_codes(EXIT_OK, EXIT_FAILED, EXIT_CONFIG, meaning={
            EXIT_OK: "stopped (SIGTERM or SIGINT) once the running job had finished",
            EXIT_FAILED: "stopped while a job was still running (cut off after the shutdown grace)",
            EXIT_CONFIG: "bad configuration (a setting, a crontab, a busy port, an account not allowed)",
        }),
    )
    p_demo = command(
        "demo", help="run end to end against an embedded AWS emulator, seeded",
        reads="Nothing of yours: it starts moto in process (and, with --store gen3workflow-db, a throwaway PostgreSQL"
        " from the installed binaries), seeds users, keys, run secrets and decoys, plans, applies and prints the end"
        " state. ROTATOR_* and AWS settings are ignored; it never reaches AWS.",
        needs="Nothing: the demo extra (pip install 'gen3wf-rotator[demo]'); for --store gen3workflow-db, PostgreSQL's"
        " server binaries (Debian: postgresql).",
        codes=exit_codes(EXIT_OK, EXIT_FAILED, EXIT_CONFIG, meaning={
            EXIT_OK: "the demo ran and every bot user ends with a live key first in the store",
            EXIT_FAILED: "the demo's run or its end-state check failed",
            EXIT_CONFIG: "the emulator or PostgreSQL is not installed",
        }),
    )
    p_demo.add_argument("--store", choices=("secretsmanager", "gen3workflow-db"), default="secretsmanager",
                        help="bot-key store to show (gen3workflow-db: a throwaway PostgreSQL from the installed binaries)")
    p_restore = command(
        "restore-secrets", help="undo run-secrets deletions inside the recovery window",
        reads="Secrets Manager secrets scheduled for deletion and tagged gen3wf-rotator:deleted-for-run (in every region"
        " of ROTATOR_RUN_SECRETS__REGIONS); restores them and removes the tag.",
        needs=NEEDS_HOSTNAME + " A region: AWS_REGION or ROTATOR_RUN_SECRETS__REGIONS.",
        codes=exit_codes(EXIT_OK, EXIT_FAILED, EXIT_CONFIG, meaning={EXIT_FAILED: "some secrets could not be restored"}),
    )
    which = p_restore.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", action="append", metavar="RUN_ID", help="restore this run's secrets (repeatable)")
    which.add_argument("--all", action="store_true", help="restore everything run-secrets scheduled for deletion")
    p_restore.add_argument("--output", choices=("text", "json"), default="text")
    p_config = command(
        "config",
        help="print the effective settings and where each came from (secrets masked); validates, no AWS call",
        description="Validate the settings and print each with its source: the environment, the Gen3Workflow config"
        " file, or the default. Secrets are masked.",
        reads="The ROTATOR_* environment and the Gen3Workflow config file (ROTATOR_GEN3WORKFLOW_CONFIG). Makes no AWS"
        " call and prints no secret.",
        needs="ROTATOR_HOSTNAME (or HOSTNAME in the Gen3Workflow config file).",
        codes=exit_codes(EXIT_OK, EXIT_CONFIG, meaning={
            EXIT_OK: "the settings are valid", EXIT_CONFIG: "a setting is invalid (the message names it)",
        }),
    )
    p_config.add_argument("--output", choices=("text", "json"), default="text")
    p_status = command(
        "status",
        help="list managed users, their keys, ages, days to expiry and stored state (read-only)",
        description="List the managed end users and bot users, each key's age and days to expiry (the service's rule:"
        " expired when Inactive or more whole days old than the lifetime) and, for bot keys, whether the store holds"
        " it and where (newest first: the first is the one the service hands out). Read-only.",
        reads="IAM users tagged name=gen3wf-<host> (GetAccountAuthorizationDetails) and ListAccessKeys for each; which"
        " key ids the bot-key store holds (never a secret). Changes nothing.",
        needs=NEEDS_HOSTNAME + " ROTATOR_BOT_KEYS__STORE (and, for gen3workflow-db, the database settings).",
        codes=exit_codes(EXIT_OK, EXIT_FAILED, EXIT_CONFIG, meaning={
            EXIT_FAILED: "some users' keys, or bot users' store entries, could not be read (shown with the error)",
        }),
    )
    p_status.add_argument("--output", choices=("text", "json"), default="text", help="format on stdout")
    p_status.add_argument("--user", action="append", metavar="NAME", help="only this IAM user (repeatable)")
    p_migrate = command(
        "migrate-store",
        help="copy stored bot keys from one store to another, verified (dry-run unless --apply)",
        description="Copy every live stored bot key from one store to another, reading each back."
        " Nothing changes without --apply; the source is kept unless --delete-source (Secrets Manager only:"
        " its secrets are scheduled for deletion with the recovery window).",
        reads="Both stores' entries (secrets are copied, never printed) and ListAccessKeys of each bot user; with --apply"
        " it writes the target store"
        " (and with --delete-source schedules the source's secrets for deletion).",
        needs=NEEDS_HOSTNAME + " The settings of both stores (the gen3workflow-db database and its ENCRYPTION_KEY).",
        codes=exit_codes(EXIT_OK, EXIT_FAILED, EXIT_CONFIG, meaning={
            EXIT_FAILED: "some keys could not be copied (or a store could not be reached)",
        }),
    )
    stores = ("secretsmanager", "gen3workflow-db")
    p_migrate.add_argument("--from", dest="source", choices=stores, required=True, help="store to copy from")
    p_migrate.add_argument("--to", dest="target", choices=stores, required=True, help="store to copy to")
    p_migrate.add_argument("--apply", action="store_true", help="copy (and with --delete-source, delete)")
    p_migrate.add_argument("--delete-source", action="store_true", help="schedule the source's secrets for deletion once verified")
    p_migrate.add_argument("--user", action="append", metavar="NAME", help="only this bot user (repeatable)")
    p_migrate.add_argument("--recovery-window-days", type=int, default=7, help="7-30, or 0 (default 7)")
    p_migrate.add_argument("--output", choices=("text", "json"), default="text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--apply" in argv and next((a for a in argv if not a.startswith("-")), None) == "plan":
        print("rotator: plan never changes anything; to apply the plan, use: rotator run --apply", file=sys.stderr)
        return EXIT_CONFIG
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from rotator import demo

        return demo.main(store=args.store, log_level=args.log_level or "warning")
    configure_logs(args, None)
    try:
        settings, origins = load_settings_with_sources()
        if args.command == "config":
            return config_command(args, settings, origins)
        configure_logs(args, settings)
        links = service_link_names()
        if links:
            log.debug("config.service_links_ignored", variables=links, reason="Kubernetes service links, not settings")
        with progress_line(args, settings):
            return run_command(args, settings)
    except ConfigError as exc:
        # The one place a configuration error becomes exit 2: before anything was touched. One line, once
        # (not also a log event): it is the whole story, and it reads the same on a terminal and in a pod's log.
        print(f"rotator: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def configure_logs(args: argparse.Namespace, settings: Settings | None) -> None:
    """Console lines on a terminal, JSON otherwise, unless ROTATOR_LOG__FORMAT says; ``-q``/``-v`` before ROTATOR_LOG__LEVEL."""
    chosen = settings.log.format if settings is not None else "auto"
    format = logs.default_format() if chosen == "auto" else chosen
    logs.configure(format=format, level=log_level(args, settings))


def log_level(args: argparse.Namespace, settings: Settings | None) -> str:
    return args.log_level or (settings.log.level if settings is not None else "info")


@contextmanager
def progress_line(args: argparse.Namespace, settings: Settings) -> Iterator[None]:
    """The one-line progress display on stderr: for text output on a terminal, unless quiet."""
    wanted = (
        getattr(args, "output", None) == "text"
        and log_level(args, settings) in ("debug", "info")
        and logs.is_terminal(sys.stderr)
    )
    Progress.show_on(sys.stderr if wanted else None)
    try:
        yield
    finally:
        Progress.show_on(None)  # cleared before anything else is printed


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    from rotator.aws import Aws
    from rotator.runner import Runner

    if args.command == "restore-secrets":
        return restore_command(args, Runner(settings, aws=Aws()))
    if args.command == "serve":
        from rotator.serve import Service

        return Service(settings).serve()
    if args.command == "migrate-store":
        return migrate_command(args, settings)
    if args.command == "status":
        return status_command(args, settings)
    return run_jobs(args, settings)


def run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    """``plan`` and ``run``."""
    from rotator.aws import Aws
    from rotator.metrics import Metrics
    from rotator.report import render_json, render_text
    from rotator.runner import Runner

    jobs = selected_jobs(args.job, settings)
    dry_run = True if args.command == "plan" else not (args.apply or not settings.dry_run)
    aws = Aws()
    metrics = Metrics()
    metrics.instrument(aws)
    result = Runner(settings, aws=aws).run(jobs, dry_run=dry_run, users=args.user, plan_shown=True)
    Progress.clear()
    print(render_json(result, command=args.command) if args.output == "json" else render_text(result, command=args.command))
    if args.command == "run" and settings.metrics.pushgateway_url:
        metrics.record_run(result, settings=settings)
        push_metrics(metrics, settings, jobs)
    if args.command == "run":
        notify(result, settings)
    return result.exit_code


def selected_jobs(named: Sequence[str] | None, settings: Settings) -> list[str]:
    """The jobs named by --job, else every job its schedule enables (an empty ROTATOR_SCHEDULE__<JOB> disables it)."""
    enabled = settings.schedule.expressions()
    if not named:
        for job in JOB_NAMES:
            if job not in enabled:
                log.info("job.disabled", job=job, hint=f"ROTATOR_SCHEDULE__{setting_key(job).upper()} is empty; --job {job} runs it")
        return [job for job in JOB_NAMES if job in enabled]
    for job in named:
        if job not in enabled:
            log.warning("job.disabled", job=job, hint="its schedule is empty (disabled in serve); run because --job names it")
    return list(dict.fromkeys(named))


def notify(result, settings: Settings) -> None:
    """The optional Slack notice of a failed or refused run; never changes the exit code."""
    from rotator.notify import notify_failure

    try:
        webhook = settings.notify.slack_webhook()
    except ConfigError as exc:
        log.error("notify.failed", channel="slack", error=str(exc))
        return
    notify_failure(result, webhook=webhook)


def push_metrics(metrics, settings: Settings, jobs: Sequence[str]) -> None:
    """Push to the Pushgateway; a failure (even reading its password file) never changes the exit code."""
    from rotator.metrics import push, safe_url

    try:
        password = settings.metrics.pushgateway_password()
    except ConfigError as exc:
        log.error("metrics.push_failed", url=safe_url(settings.metrics.pushgateway_url), error=str(exc))
        return
    push(
        metrics,
        url=settings.metrics.pushgateway_url,
        hostname=settings.hostname,
        jobs=jobs,
        username=settings.metrics.pushgateway_username,
        password=password,
    )


def config_command(args: argparse.Namespace, settings: Settings, origins) -> int:
    import json

    rows = effective_settings(settings, origins)
    if args.output == "json":
        print(json.dumps({"command": "config", "valid": True, "settings": [
            {"variable": v, "value": value, "source": source} for v, value, source in rows]}, indent=2))
        return EXIT_OK
    from rotator.report import terminal_width

    print(render_config(rows, width=terminal_width()))
    return EXIT_OK


def render_config(rows: Sequence[tuple[str, str, str]], *, width: int) -> str:
    """VARIABLE and VALUE columns in ``width``; a setting not at its default says where it came from.

    A value (and its source) that does not fit continues under the value column, folded."""
    from rotator.report import fold

    name_width = max(len(v) for v, _, _ in rows)
    if name_width + 2 + 20 > width:  # a narrow terminal: values on their own lines
        name_width = 0
    lines = ["settings are valid; their effective values (secrets masked), and where each", "came from unless it is the default:", ""]
    for variable, value, source in rows:
        text = f"{value}  ({source})".strip() if source != "default" else value
        if not name_width:
            lines.append(variable)
            lines += [f"    {piece}" for piece in fold(text, width - 4)] if text else []
            continue
        pieces = fold(text, width - name_width - 2) or [""]
        lines.append(f"{variable.ljust(name_width)}  {pieces[0]}".rstrip())
        lines += [f"{'':{name_width}}  {piece}" for piece in pieces[1:]]
    return "\n".join(lines)


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    """``rotator status``: read-only; exit 1 when some users' keys or store entries could not be read."""
    import json

    from rotator import status
    from rotator.aws import Aws, describe_error
    from rotator.report import terminal_width
    from rotator.runner import Runner, utcnow

    aws = Aws()
    account_id = Runner(settings, aws=aws).check_identity()  # also ROTATOR_ALLOWED_ACCOUNT_IDS
    try:
        found = status.read_status(settings, aws, account_id=account_id, now=utcnow(), users=args.user)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the account's users could not be listed: nothing to show
        Progress.clear()
        print(f"rotator: status: cannot list the account's users: {describe_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    Progress.clear()
    if args.output == "json":
        print(json.dumps(status.to_document(found), indent=2))
    else:
        print(status.render_text(found, width=terminal_width()))
    return found.exit_code


def migrate_command(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from rotator.aws import Aws, SafeError, describe_error
    from rotator.keystore import make_store
    from rotator.migrate import migrate_store
    from rotator.runner import Runner
    from rotator.settings import with_store

    if args.source == args.target:
        raise ConfigError(f"migrate-store: --from and --to both name {args.source}; copy from one store to the other")
    aws = Aws()
    aws.limit_rate(settings.aws.max_requests_per_second)
    source = make_store(with_store(settings, args.source), aws)
    target = make_store(with_store(settings, args.target), aws)
    try:
        account_id = Runner(settings, aws=aws).check_identity()
        try:
            results = migrate_store(
                source, target, users=args.user, apply=args.apply, delete_source=args.delete_source,
                recovery_window_days=args.recovery_window_days, iam=aws.client("iam"),
            )
        except ConfigError:
            raise
        except SafeError as exc:  # the database cannot be reached: nothing was copied
            log.error("store.migrate_failed", error=describe_error(exc))
            print(f"rotator: {describe_error(exc)}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        for store in (source, target):
            getattr(store, "close", lambda: None)()
    if args.output == "json":
        doc = {"command": "migrate-store", "account": account_id, "dry_run": not args.apply,
               "results": [r.__dict__ for r in results]}
        print(json.dumps(doc, indent=2))
    elif not results:
        print(f"nothing to migrate: {args.source} holds no bot keys")
    else:
        for r in results:
            print(f"{r.outcome:8} {r.action:13} {r.user}{'/' + r.key_id if r.key_id else ''}{'  ' + r.detail if r.detail else ''}")
        if not args.apply:
            print("dry-run: nothing was changed; add --apply to copy")
    return EXIT_FAILED if any(r.outcome == "failed" for r in results) else EXIT_OK


def restore_command(args: argparse.Namespace, runner) -> int:
    import json

    from rotator.restore import restore_secrets

    regions = runner.settings.run_secrets.regions or ([runner.aws.region] if runner.aws.region else [])
    if not regions:
        raise ConfigError("restore-secrets needs a region: set AWS_REGION (or ROTATOR_RUN_SECRETS__REGIONS)")
    account_id = runner.check_identity()
    results = []
    for region in regions:
        sm = runner.aws.client("secretsmanager", region=region)
        results += restore_secrets(sm, run_ids=None if args.all else set(args.run))
    if args.output == "json":
        print(json.dumps({"command": "restore-secrets", "account": account_id, "secrets": [r.__dict__ for r in results]}, indent=2))
    elif not results:
        print("nothing to restore: no secret scheduled for deletion by run-secrets matches")
    else:
        for r in results:
            print(f"{r.outcome:9} {r.name}  (run {r.run_id}){'  ' + r.error if r.error else ''}")
    return EXIT_FAILED if any(r.outcome == "failed" for r in results) else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
