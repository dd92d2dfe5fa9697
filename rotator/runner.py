"""The generic job runner: it reads the clock once per run and hands every job the same ``now``.

identity check -> prepare every selected job (configuration: exit 2, nothing touched) ->
observe + plan each job -> safety brakes over all plans -> execute -> summary logs.
All plans are made and checked before anything is executed, so a tripped brake means
nothing at all was touched. Each job's observe/plan and its execution run inside one
boundary: whatever one job raises fails that job alone, and the others go on.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from rotator.aws import Aws, describe_error
from rotator.capacity import UserQuota, read_user_quota
from rotator.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, ConfigError
from rotator.executor import Executor
from rotator.jobs import get_job
from rotator.jobs.base import Job, Plan, RunContext
from rotator.model import FAILED, Outcome
from rotator.safety import Brake, check_account, check_brakes
from rotator.settings import Settings

log = structlog.get_logger("rotator.runner")

SUCCESS, FAILED_JOB, REFUSED, ERROR = "success", "failed", "refused", "error"
JOB_OUTCOMES = (SUCCESS, FAILED_JOB, REFUSED, ERROR)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class JobResult:
    job: str
    plan: Plan | None = None
    outcomes: tuple[Outcome, ...] = ()
    brake: Brake | None = None
    error: str | None = None
    """Why the job could not plan or execute at all."""
    not_run: str | None = None
    """Why a job whose plan was fine was not executed (``brake on bot-keys``): nothing of the run changed."""
    duration_seconds: float = 0.0

    @property
    def failed_actions(self) -> int:
        return sum(1 for o in self.outcomes if o.result == FAILED)

    @property
    def outcome(self) -> str:
        """success | failed | refused | error"""
        if self.error:
            return ERROR
        if self.brake or self.not_run:
            return REFUSED
        if self.failed_actions or (self.plan and self.plan.errors):
            return FAILED_JOB
        return SUCCESS


@dataclass
class RunResult:
    now: datetime
    dry_run: bool
    account_id: str | None
    jobs: list[JobResult]
    user_quota: UserQuota | None = None
    """The account's IAM users against their quota (None: not read, or could not be)."""
    run_id: str = ""
    """The ``run_id`` every log event of this run carries."""
    hostname: str = ""

    @property
    def exit_code(self) -> int:
        if any(j.brake for j in self.jobs):
            return EXIT_REFUSED
        if any(j.outcome != SUCCESS for j in self.jobs):
            return EXIT_FAILED
        return EXIT_OK


class Runner:
    """Runs jobs against one AWS account. Built once per process; ``run`` per invocation."""

    def __init__(self, settings: Settings, *, aws: Aws, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.aws = aws
        self.clock = clock
        self._account_id: str | None = None
        aws.limit_rate(settings.aws.max_requests_per_second)

    def check_identity(self) -> str:
        """STS GetCallerIdentity against ROTATOR_ALLOWED_ACCOUNT_IDS (ConfigError if not allowed)."""
        if self._account_id is None:
            try:
                account_id = self.aws.account_id()
            except Exception as exc:  # noqa: BLE001 - any failure here means: no identity
                raise ConfigError(f"cannot establish the AWS identity: {describe_error(exc)}") from None
            check_account(account_id, self.settings.allowed_account_ids)
            self._account_id = account_id
        return self._account_id

    def run(
        self, jobs: Sequence[str], *, dry_run: bool, users: Sequence[str] | None = None, plan_shown: bool = False
    ) -> RunResult:
        """Run ``jobs``; ``users`` (IAM user names) limits the key jobs to those users.

        ``plan_shown``: the caller prints every action (plan and run do): a dry run's per-action
        events are then debug-level, not a second copy of the table at info."""
        # Every event of this run carries these fields, so one run's audit trail can be pulled out of the logs.
        run_id = uuid.uuid4().hex[:12]
        with structlog.contextvars.bound_contextvars(run_id=run_id, hostname=self.settings.hostname):
            selected = [get_job(name) for name in jobs]
            ctx = RunContext(
                settings=self.settings, aws=self.aws, now=self.clock(), clock=self.clock,
                only_users=frozenset(users) if users else None,
            )
            try:
                for job in selected:
                    job.prepare(ctx)  # ConfigError (a token file, a region, the store): exit 2 before any change
                account_id = ctx.account_id = self.check_identity()
                with structlog.contextvars.bound_contextvars(account=account_id):
                    result = self._run(selected, ctx, dry_run=dry_run, account_id=account_id, plan_shown=plan_shown)
                result.run_id, result.hostname = run_id, self.settings.hostname
                return result
            finally:
                ctx.close()

    def _run(self, jobs: Sequence[Job], ctx: RunContext, *, dry_run: bool, account_id: str, plan_shown: bool) -> RunResult:
        log.info("run.started", jobs=[j.name for j in jobs], dry_run=dry_run, now=ctx.now.isoformat())
        user_quota = read_user_quota(self.aws, warn_fraction=self.settings.capacity.warn_fraction)

        results = [self._plan(job, ctx) for job in jobs]
        if any(r.brake for r in results):
            braked = ", ".join(r.job for r in results if r.brake)
            for result in results:
                if not result.brake and result.plan is not None:
                    result.not_run = f"brake on {braked}"
            log.error("run.refused", reason="a safety brake refused a plan; nothing was changed", jobs=braked)
        else:
            executor = Executor(dry_run=dry_run, dry_run_level="debug" if plan_shown else "info")
            for job, result in zip(jobs, results, strict=True):
                if result.plan is not None:
                    self._execute(job, result, executor, ctx)

        for result in results:
            _log_summary(result, dry_run=dry_run)
        return RunResult(now=ctx.now, dry_run=dry_run, account_id=account_id, jobs=results, user_quota=user_quota)

    def _plan(self, job: Job, ctx: RunContext) -> JobResult:
        started = time.monotonic()
        result = JobResult(job=job.name)
        stage = "observe"
        try:
            observed = job.observe(ctx)
            stage = "plan"
            result.plan = job.plan(observed, now=ctx.now, settings=self.settings)
        except Exception as exc:  # noqa: BLE001 - the boundary: this job fails, the others go on
            result.error = describe_error(exc)
            log.error("job.inventory_failed", job=job.name, error=result.error, stage=stage)
        else:
            result.brake = check_brakes(job.name, result.plan.actions, managed=result.plan.managed, settings=self.settings.safety)
            if result.brake:
                log.error("safety.brake_tripped", job=job.name, limit=result.brake.limit, message=result.brake.message)
        result.duration_seconds = time.monotonic() - started
        return result

    def _execute(self, job: Job, result: JobResult, executor: Executor, ctx: RunContext) -> None:
        started = time.monotonic()
        outcomes: list[Outcome] = []
        try:
            executor.execute(job, result.plan, ctx, outcomes)
        except Exception as exc:  # noqa: BLE001 - the boundary: this job fails, the others go on
            result.error = describe_error(exc)
            log.error("job.execute_failed", job=job.name, error=result.error)
        finally:
            result.outcomes = tuple(outcomes)  # what was done before a failure still counts
        result.duration_seconds += time.monotonic() - started


def _log_summary(result: JobResult, *, dry_run: bool) -> None:
    plan = result.plan
    document = plan.document() if plan else {}
    (log.info if result.outcome == SUCCESS else log.error)(
        "job.finished",
        job=result.job,
        outcome=result.outcome,
        dry_run=dry_run,
        managed_users=document.get("managed_users"),
        managed=plan.managed if plan else None,
        planned=len(plan.actions) if plan else 0,
        skipped_users=len(plan.skipped) if plan else 0,
        errors=len(plan.errors) if plan else 0,
        outcomes=dict(Counter(f"{o.action.kind}:{o.result}" for o in result.outcomes)),
        duration_seconds=round(result.duration_seconds, 3),
        error=result.error,
        brake=result.brake.limit if result.brake else None,
        not_run=result.not_run,
    )
