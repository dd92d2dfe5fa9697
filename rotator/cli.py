"""Command line: ``rotator plan|run|serve|demo|restore-secrets``.

Exit codes: 0 done, 1 some actions failed, 2 bad configuration or usage (nothing
touched), 3 a safety brake refused the plan (nothing touched).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import structlog

from rotator import __version__, logs
from rotator.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, ConfigError
from rotator.jobs import JOB_NAMES
from rotator.settings import Settings, effective_settings, load_settings_with_sources, service_link_names

log = structlog.get_logger("rotator.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotator",
        description="Key rotation and cleanup for Gen3Workflow deployments on AWS.",
        epilog="Settings come from ROTATOR_* environment variables; see the README.",
    )
    parser.add_argument("--version", action="version", version=f"rotator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--job",
            action="append",
            choices=JOB_NAMES,
            help="job to run (repeatable); default: all enabled jobs",
        )
        p.add_argument("--output", choices=("text", "json"), default="text", help="plan/outcome format on stdout")
        p.add_argument("--user", action="append", metavar="NAME", help="limit the key jobs to this IAM user (repeatable)")

    p_plan = sub.add_parser("plan", help="show what would change; changes nothing")
    job_options(p_plan)
    p_run = sub.add_parser("run", help="run jobs once (dry-run unless --apply or ROTATOR_DRY_RUN=false)")
    job_options(p_run)
    p_run.add_argument("--apply", action="store_true", help="change things (overrides ROTATOR_DRY_RUN)")
    sub.add_parser("serve", help="run jobs on their schedules; serve /metrics, /healthz, /readyz")
    p_demo = sub.add_parser("demo", help="run end to end against an embedded AWS emulator, seeded")
    p_demo.add_argument("--store", choices=("secretsmanager", "gen3workflow-db"), default="secretsmanager",
                        help="bot-key store to show (gen3workflow-db: a throwaway PostgreSQL from the installed binaries)")
    p_restore = sub.add_parser("restore-secrets", help="undo run-secrets deletions inside the recovery window")
    which = p_restore.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", action="append", metavar="RUN_ID", help="restore this run's secrets (repeatable)")
    which.add_argument("--all", action="store_true", help="restore everything run-secrets scheduled for deletion")
    p_restore.add_argument("--output", choices=("text", "json"), default="text")
    p_config = sub.add_parser(
        "config",
        help="print the effective settings and where each came from (secrets masked); validates, no AWS call",
        description="Validate the settings and print each with its source: the environment, the Gen3Workflow config"
        " file, or the default. Secrets are masked. Makes no AWS call. Exit 0 valid, 2 invalid.",
    )
    p_config.add_argument("--output", choices=("text", "json"), default="text")
    p_migrate = sub.add_parser(
        "migrate-store",
        help="copy stored bot keys from one store to another, verified (dry-run unless --apply)",
        description="Copy every live stored bot key from one store to another, reading each back."
        " Nothing changes without --apply; the source is kept unless --delete-source (Secrets Manager only:"
        " its secrets are scheduled for deletion with the recovery window).",
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
    if argv[:1] == ["plan"] and "--apply" in argv:
        print("rotator: plan never changes anything; to apply the plan, use: rotator run --apply", file=sys.stderr)
        return EXIT_CONFIG
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from rotator import demo

        return demo.main(store=args.store)
    configured = False
    try:
        settings, origins = load_settings_with_sources()
        if args.command == "config":
            return config_command(args, settings, origins)
        logs.configure(format=settings.log.format, level=settings.log.level)
        configured = True
        links = service_link_names()
        if links:
            log.debug("config.service_links_ignored", variables=links, reason="Kubernetes service links, not settings")
        return run_command(args, settings)
    except ConfigError as exc:
        # The one place a configuration error becomes exit 2: before anything was touched.
        if not configured:
            logs.configure()
        log.error("config.invalid", error=str(exc))
        print(f"rotator: {exc}", file=sys.stderr)
        return EXIT_CONFIG


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
    return run_jobs(args, settings)


def run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    """``plan`` and ``run``."""
    from rotator.aws import Aws
    from rotator.metrics import Metrics
    from rotator.report import render_json, render_text
    from rotator.runner import Runner

    jobs = list(dict.fromkeys(args.job or JOB_NAMES))
    dry_run = True if args.command == "plan" else not (args.apply or not settings.dry_run)
    aws = Aws()
    metrics = Metrics()
    metrics.instrument(aws)
    result = Runner(settings, aws=aws).run(jobs, dry_run=dry_run, users=args.user)
    render = render_json if args.output == "json" else render_text
    print(render(result, command=args.command))
    if args.command == "run" and settings.metrics.pushgateway_url:
        metrics.record_run(result, settings=settings)
        push_metrics(metrics, settings, jobs)
    if args.command == "run":
        notify(result, settings)
    return result.exit_code


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
    width = max(len(v) for v, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 40)
    print("settings are valid; their effective values (secrets masked):\n")
    for variable, value, source in rows:
        print(f"{variable.ljust(width)}  {value.ljust(value_width)}  {source}".rstrip())
    return EXIT_OK


def migrate_command(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from rotator.aws import Aws, SafeError, describe_error
    from rotator.keystore import make_store
    from rotator.migrate import migrate_store
    from rotator.runner import Runner
    from rotator.settings import with_store

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
        doc = {"command": "migrate-store", "account_id": account_id, "dry_run": not args.apply,
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
        print(json.dumps({"command": "restore-secrets", "account_id": account_id, "secrets": [r.__dict__ for r in results]}, indent=2))
    elif not results:
        print("nothing to restore: no secret scheduled for deletion by run-secrets matches")
    else:
        for r in results:
            print(f"{r.outcome:9} {r.name}  (run {r.run_id}){'  ' + r.error if r.error else ''}")
    return EXIT_FAILED if any(r.outcome == "failed" for r in results) else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
