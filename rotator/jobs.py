"""The job runner: the only code that reads the clock.

settings -> inventory (read-only) -> planner (pure) -> safety brakes -> executor -> result.
All plans of one invocation are made and checked before anything is executed, so a
tripped brake means nothing at all was touched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from rotator import inventory
from rotator.aws import Aws, describe_error
from rotator.executor import Executor
from rotator.keystore import BotKeyStore
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import (
    FAILED,
    AccessKey,
    Action,
    BotState,
    ManagedUser,
    Outcome,
    ReportedKey,
    RunSecret,
    Skipped,
    UserKeys,
)
from rotator.planner import (
    BOT_KEYS,
    RUN_SECRETS,
    USER_KEYS,
    bot_may_need_action,
    plan_bot_keys,
    plan_run_secrets,
    plan_user_keys,
    run_secret_needs_status,
    run_secret_verdict,
    user_may_need_action,
)
from rotator.runstatus import RunStatus, RunStatusSource, make_source
from rotator.safety import Brake, check_account, check_brakes
from rotator.secret_inventory import describe_replication, list_run_secrets
from rotator.settings import ConfigError, Settings

log = structlog.get_logger("rotator.jobs")



def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobPlan:
    job: str
    actions: tuple[Action, ...]
    managed_users: int
    managed: int
    """Keys (or secrets) the job manages: the base of the deletion-fraction brake."""
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[str, ...] = ()
    observed_keys: dict[str, tuple[AccessKey | ReportedKey, ...]] = field(default_factory=dict, repr=False)
    inventory_source: str = ""
    states: dict[str, int] = field(default_factory=dict)
    """run-secrets: how many secrets are in each state."""
    secrets: dict[str, RunSecret] = field(default_factory=dict, repr=False)
    """run-secrets: the secrets seen, by name, for the re-check before each deletion."""


@dataclass
class JobResult:
    job: str
    plan: JobPlan | None = None
    outcomes: tuple[Outcome, ...] = ()
    brake: Brake | None = None
    error: str | None = None
    duration_seconds: float = 0.0

    @property
    def failed_actions(self) -> int:
        return sum(1 for o in self.outcomes if o.outcome == FAILED)

    @property
    def outcome(self) -> str:
        """success | failed | refused | error"""
        if self.error:
            return "error"
        if self.brake:
            return "refused"
        if self.failed_actions or (self.plan and self.plan.errors):
            return "failed"
        return "success"


@dataclass
class RunResult:
    now: datetime
    dry_run: bool
    account_id: str | None
    jobs: list[JobResult]

    @property
    def exit_code(self) -> int:
        if any(j.brake for j in self.jobs):
            return 3
        if any(j.outcome != "success" for j in self.jobs):
            return 1
        return 0


class Runner:
    """Runs jobs against one AWS account. Built once per process; ``run`` per invocation."""

    def __init__(self, settings: Settings, *, aws: Aws, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.aws = aws
        self.clock = clock
        self._account_id: str | None = None

    def check_identity(self) -> str:
        """STS GetCallerIdentity against ROTATOR_ALLOWED_ACCOUNT_IDS (ConfigError if not allowed)."""
        if self._account_id is None:
            try:
                account_id = self.aws.account_id()
            except (ClientError, BotoCoreError) as exc:
                raise ConfigError(f"cannot establish the AWS identity: {describe_error(exc)}") from None
            check_account(account_id, self.settings.allowed_account_ids)
            self._account_id = account_id
        return self._account_id

    def bot_store(self) -> BotKeyStore:
        if self.aws.region is None:
            raise ConfigError("bot-keys stores secrets in Secrets Manager: set AWS_REGION (or AWS_DEFAULT_REGION)")
        return SecretsManagerStore(self.aws.client("secretsmanager"), prefix=self.settings.bot_secret_prefix)

    def secrets_client(self):
        if self.aws.region is None:
            raise ConfigError("run-secrets works in one Secrets Manager region: set AWS_REGION (or AWS_DEFAULT_REGION)")
        return self.aws.client("secretsmanager")

    def run(self, jobs: Sequence[str], *, dry_run: bool) -> RunResult:
        # Every event of this run carries these fields, so one run's audit trail can be pulled out of the logs.
        with structlog.contextvars.bound_contextvars(run_id=uuid.uuid4().hex[:12], hostname=self.settings.hostname):
            account_id = self.check_identity()
            with structlog.contextvars.bound_contextvars(account=account_id):
                return self._run(jobs, dry_run=dry_run, account_id=account_id)

    def _run(self, jobs: Sequence[str], *, dry_run: bool, account_id: str) -> RunResult:
        store = self.bot_store() if BOT_KEYS in jobs else None
        sm = self.secrets_client() if RUN_SECRETS in jobs else None
        source = make_source(self.settings.run_secrets) if RUN_SECRETS in jobs else None
        now = self.clock()
        log.info("run.started", jobs=list(jobs), dry_run=dry_run, now=now.isoformat())

        observer = _AccountObserver(self.aws.client("iam"), hostname=self.settings.hostname)
        results: list[JobResult] = []
        for job in jobs:
            started = time.monotonic()
            result = JobResult(job=job)
            try:
                result.plan = self._plan(job, observer=observer, store=store, source=source, now=now)
            except (ClientError, BotoCoreError) as exc:
                result.error = describe_error(exc)
                log.error("job.inventory_failed", job=job, error=result.error)
            else:
                result.brake = check_brakes(job, result.plan.actions, managed=result.plan.managed, settings=self.settings.safety)
                if result.brake:
                    log.error("safety.brake_tripped", job=job, limit=result.brake.limit, message=result.brake.message)
            result.duration_seconds = time.monotonic() - started
            results.append(result)

        if any(r.brake for r in results):
            log.error("run.refused", reason="a safety brake refused a plan; nothing was changed")
        else:
            executor = Executor(
                iam=self.aws.client("iam"),
                store=store,
                sm=sm,
                dry_run=dry_run,
                recovery_window_days=self.settings.run_secrets.recovery_window_days,
                recheck=_Recheck(self, source, _planned_secrets(results)) if source else None,
                clock=self.clock,
            )
            for result in results:
                if result.plan is None:
                    continue
                started = time.monotonic()
                result.outcomes = executor.execute(result.plan.actions)
                result.duration_seconds += time.monotonic() - started

        for result in results:
            _log_summary(result, dry_run=dry_run)
        return RunResult(now=now, dry_run=dry_run, account_id=account_id, jobs=results)

    def _plan(
        self, job: str, *, observer: _AccountObserver, store: BotKeyStore | None, source: RunStatusSource | None, now: datetime
    ) -> JobPlan:
        if job == USER_KEYS:
            return self._plan_user_keys(observer, now=now)
        if job == BOT_KEYS:
            assert store is not None
            return self._plan_bot_keys(observer, store=store, now=now)
        if job == RUN_SECRETS:
            assert source is not None
            return self._plan_run_secrets(source=source, now=now)
        raise ConfigError(f"unknown job {job!r}")

    def _plan_run_secrets(self, *, source: RunStatusSource, now: datetime) -> JobPlan:
        settings = self.settings.run_secrets
        sm = self.secrets_client()
        region = self.aws.region
        secrets = list_run_secrets(sm, patterns=settings.patterns, exclude_prefixes=[self.settings.bot_secret_prefix])
        run_ids = sorted({s.run_id for s in secrets if run_secret_needs_status(s, now=now, settings=settings, region=region)})
        statuses = lookup_statuses(source, run_ids)
        described = []
        for secret in secrets:
            _, reason = run_secret_verdict(secret, statuses.get(secret.run_id), now=now, settings=settings, region=region)
            described.append(describe_replication(sm, secret) if reason else secret)
        actions, states = plan_run_secrets(described, statuses, now=now, settings=settings, region=region)
        errors = tuple(
            f"run {run_id}: {source.name} status unavailable ({status.detail}); its secrets are kept"
            for run_id, status in statuses.items()
            if status.state == "error"
        )
        for message in errors:
            log.error("run_status.failed", source=source.name, error=message)
        skipped = tuple(
            Skipped(name=s.name, reason="has a run-secret prefix but matches no pattern") for s in secrets if s.run_id is None
        )
        for s in skipped:
            log.warning("secret.skipped", secret=s.name, reason=s.reason)
        for s in described:
            if s.pending_deletion:
                log.info("secret.pending_deletion", secret=s.name, run_id=s.run_id)
        return JobPlan(
            job=RUN_SECRETS,
            actions=actions,
            managed_users=0,
            managed=len(secrets),
            skipped=skipped,
            errors=errors,
            inventory_source=f"list-secrets + {source.name}",
            states=states,
            secrets={s.name: s for s in described},
        )

    def _plan_user_keys(self, observer: _AccountObserver, *, now: datetime) -> JobPlan:
        settings = self.settings.user_keys
        users = [u for u in observer.users if u.kind == "user"]
        report = observer.report
        if report is None:
            candidates = users
        else:
            candidates = [u for u in users if user_may_need_action(report.get(u.name, ()), now=now, settings=settings)]
        confirmed = inventory.confirm_keys(observer.iam, candidates)
        actions = plan_user_keys([UserKeys(u, confirmed[u.name]) for u in candidates], now=now, settings=settings)
        observed = _observed(users, report, confirmed)
        return JobPlan(
            job=USER_KEYS,
            actions=actions,
            managed_users=len(users),
            managed=sum(len(k) for k in observed.values()),
            skipped=observer.skipped,
            observed_keys=observed,
            inventory_source=observer.source,
        )

    def _plan_bot_keys(self, observer: _AccountObserver, *, store: BotKeyStore, now: datetime) -> JobPlan:
        settings = self.settings.bot_keys
        bots = [u for u in observer.users if u.kind == "bot"]
        report = observer.report
        if report is None:
            candidates = bots
        else:
            index = store.index()
            candidates = [
                b
                for b in bots
                if bot_may_need_action(report.get(b.name, ()), stored_count=index.get(b.name), now=now, settings=settings)
            ]
        confirmed = inventory.confirm_keys(observer.iam, candidates)
        states, errors = [], []
        for bot in candidates:
            try:
                stored = store.stored_key_ids(bot.name)
            except (ClientError, BotoCoreError, ValueError) as exc:
                # Without the store's view we cannot tell an orphan from a good key: leave this user alone.
                errors.append(f"{bot.name}: store unreadable: {describe_error(exc)}")
                log.error("store.read_failed", user=bot.name, error=describe_error(exc))
                continue
            states.append(BotState(bot, confirmed[bot.name], stored))
        actions = plan_bot_keys(states, now=now, settings=settings)
        observed = _observed(bots, report, confirmed)
        return JobPlan(
            job=BOT_KEYS,
            actions=actions,
            managed_users=len(bots),
            managed=sum(len(k) for k in observed.values()),
            skipped=observer.skipped,
            errors=tuple(errors),
            observed_keys=observed,
            inventory_source=observer.source,
        )


STATUS_CONCURRENCY = 8


def lookup_statuses(source: RunStatusSource, run_ids: Sequence[str]) -> dict[str, RunStatus]:
    """One lookup per run, at most STATUS_CONCURRENCY at a time."""
    if not run_ids:
        return {}
    with ThreadPoolExecutor(max_workers=min(STATUS_CONCURRENCY, len(run_ids)), thread_name_prefix="run-status") as pool:
        return dict(zip(run_ids, pool.map(source.lookup, run_ids), strict=True))


def _planned_secrets(results: Sequence[JobResult]) -> dict[str, RunSecret]:
    return {name: s for r in results if r.plan for name, s in r.plan.secrets.items()}


class _Recheck:
    """Looks a run up again just before its secrets are deleted (once per run)."""

    def __init__(self, runner: Runner, source: RunStatusSource, secrets: dict[str, RunSecret]) -> None:
        self._runner = runner
        self._source = source
        self._secrets = secrets
        self._fresh: dict[str, RunStatus] = {}

    def __call__(self, action: Action) -> str | None:
        if action.run_id not in self._fresh:
            self._fresh[action.run_id] = self._source.lookup(action.run_id)
        status = self._fresh[action.run_id]
        secret = self._secrets[action.target]
        _, reason = run_secret_verdict(
            secret, status, now=self._runner.clock(), settings=self._runner.settings.run_secrets, region=self._runner.aws.region
        )
        if reason is None:
            return f"kept: run {action.run_id} is now {status.state} ({status.detail})"
        return None


class _AccountObserver:
    """What one invocation reads once and shares between jobs: users and the credential report."""

    def __init__(self, iam, *, hostname: str) -> None:
        self.iam = iam
        self.hostname = hostname
        self._users: tuple[ManagedUser, ...] | None = None
        self.skipped: tuple[Skipped, ...] = ()
        self._report_read = False
        self._report: dict[str, tuple[ReportedKey, ...]] | None = None
        self.source = ""

    @property
    def users(self) -> tuple[ManagedUser, ...]:
        if self._users is None:
            self._users, self.skipped = inventory.list_managed_users(self.iam, hostname=self.hostname)
            for s in self.skipped:
                log.warning("user.skipped", user=s.name, reason=s.reason)
            log.info("inventory.users", managed=len(self._users), skipped=len(self.skipped))
        return self._users

    @property
    def report(self) -> dict[str, tuple[ReportedKey, ...]] | None:
        if not self._report_read:
            self._report_read = True
            try:
                self._report = inventory.read_credential_report(self.iam)
                self.source = "credential-report"
            except inventory.ReportUnavailable as exc:
                log.warning(
                    "inventory.credential_report_unavailable",
                    error=str(exc),
                    fallback="ListAccessKeys for every managed user",
                )
                self.source = "list-access-keys"
        return self._report


def _observed(users, report, confirmed) -> dict[str, tuple[AccessKey | ReportedKey, ...]]:
    """The freshest view of each user's keys: confirmed where listed, else the report."""
    return {u.name: confirmed.get(u.name, report.get(u.name, ()) if report else ()) for u in users}


def _log_summary(result: JobResult, *, dry_run: bool) -> None:
    counts: dict[str, int] = {}
    for o in result.outcomes:
        counts[f"{o.action.kind}:{o.outcome}"] = counts.get(f"{o.action.kind}:{o.outcome}", 0) + 1
    plan = result.plan
    log_fn = log.info if result.outcome == "success" else log.error
    log_fn(
        "job.finished",
        job=result.job,
        outcome=result.outcome,
        dry_run=dry_run,
        managed_users=plan.managed_users if plan else None,
        managed=plan.managed if plan else None,
        planned=len(plan.actions) if plan else 0,
        skipped_users=len(plan.skipped) if plan else 0,
        errors=len(plan.errors) if plan else 0,
        outcomes=counts,
        duration_seconds=round(result.duration_seconds, 3),
        error=result.error,
        brake=result.brake.limit if result.brake else None,
    )
