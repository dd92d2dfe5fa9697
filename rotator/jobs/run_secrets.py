"""run-secrets: delete pipeline secrets from AWS Secrets Manager once their run has finished.

observe lists the secrets (never their values), asks the pure planner which runs need a
status lookup, looks them up, asks which secrets would go and so need DescribeSecret (for
their replicas), describes those; plan then decides from what was seen. Just before each
deletion the run is looked up again: a resumed run keeps its secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import ClientError

from rotator.aws import error_code
from rotator.concurrency import ordered_map
from rotator.errors import ConfigError
from rotator.executor import attempt, per_unit
from rotator.jobs.base import Plan, RunContext, frozen_mapping
from rotator.model import DELETE_SECRET, SKIPPED, Action, Outcome, RunSecret, Skipped
from rotator.planner import age_days, fmt_age
from rotator.runstatus import RunStatus, RunStatusSource, make_source
from rotator.secret_inventory import PERMISSIONS as LISTING_PERMISSIONS
from rotator.secret_inventory import describe_replication, list_run_secrets

if TYPE_CHECKING:
    from rotator.metrics import Metrics
    from rotator.runner import JobResult
    from rotator.settings import RunSecretsSettings, Settings

log = structlog.get_logger("rotator.jobs.run_secrets")

NAME = "run-secrets"

# Tags set on a run secret just before deleting it: restore-secrets finds them by these.
DELETED_FOR_RUN_TAG = "gen3wf-rotator:deleted-for-run"
DELETED_AT_TAG = "gen3wf-rotator:deleted-at"

STATES = (
    "finished", "expired", "active", "unknown", "not-visible", "error", "too-young", "pending-deletion", "malformed",
    "replica", "replicated",
)
STATUS_CONCURRENCY = 8


# --- planning (pure) ------------------------------------------------------------------


def standing_state(secret: RunSecret, *, now: datetime, settings: RunSecretsSettings, region: str | None) -> str | None:
    """The state a secret has whatever its run's status (then no lookup is needed), or None."""
    if secret.run_id is None:
        return "malformed"
    if secret.pending_deletion:
        return "pending-deletion"
    # ListSecrets is eventually consistent, and a run may still be starting: leave young secrets.
    if now - secret.created < timedelta(minutes=settings.min_age_minutes):
        return "too-young"
    if secret.primary_region and secret.primary_region != (secret.region or region):
        return "replica"  # left to its primary region
    return None


def run_secret_verdict(
    secret: RunSecret, status: RunStatus | None, *, now: datetime, settings: RunSecretsSettings, region: str | None
) -> tuple[str, str | None]:
    """(state, reason to delete or None) for one secret.

    States: malformed, pending-deletion, too-young, replica, active, error, unknown and
    not-visible (kept: not known finished and not old enough), replicated (would go, but has
    replicas), finished and expired (both deleted). A reason says what decided it: the
    status source, the workspace that answered, the region.
    """
    standing = standing_state(secret, now=now, settings=settings, region=region)
    if standing:
        return standing, None
    if status is None or status.state == "error":
        return "error", None
    if status.state == "active":
        return "active", None
    where = "" if settings.status_source == "none" else settings.status_source + (f", {status.where}" if status.where else "")
    in_region = f" in {secret.region or region}" if (secret.region or region) else ""
    age = now - secret.created
    state = status.state
    detail = status.detail
    if state == "finished" and status.may_retry:
        # A platform may still retry a task in an error state: final only once it ended long enough ago.
        grace = timedelta(minutes=settings.error_grace_minutes)
        if status.ended is None:
            state, detail = "unknown", f"{status.detail} without an end time"
        elif now - status.ended < grace:
            return "active", None
        else:
            detail = f"{status.detail}, ended {fmt_age(now - status.ended)} ago >= {settings.error_grace_minutes}m"
    if state == "finished":
        verdict, reason = "finished", f"run {secret.run_id} {detail} ({where}){in_region}"
    elif age.days > settings.max_age_days:
        verdict, reason = "expired", (
            f"run {secret.run_id} not known finished ({detail}{'; ' + where if where else ''}),"
            f" secret {age.days}d > {settings.max_age_days}d{in_region}"
        )
    else:
        return ("not-visible" if state == "not-visible" else "unknown"), None
    if secret.replica_regions and not settings.remove_replicas:
        return "replicated", None
    return verdict, reason


def runs_to_look_up(secrets: Iterable[RunSecret], *, now: datetime, settings: RunSecretsSettings, region: str | None) -> list[str]:
    """Runs whose status decides about one of their secrets (the others need no lookup)."""
    return sorted({s.run_id for s in secrets if standing_state(s, now=now, settings=settings, region=region) is None})


def secrets_to_describe(
    secrets: Iterable[RunSecret], statuses: Mapping[str, RunStatus], *, now: datetime, settings: RunSecretsSettings, region: str | None
) -> list[str]:
    """ARNs of secrets that would be deleted: DescribeSecret tells whether they have replicas."""
    return [
        s.arn
        for s in secrets
        if s.replica_regions is None
        and run_secret_verdict(s, statuses.get(s.run_id or ""), now=now, settings=settings, region=region)[1]
    ]


def plan_run_secrets(
    secrets: Iterable[RunSecret],
    statuses: Mapping[str, RunStatus],
    *,
    now: datetime,
    settings: RunSecretsSettings,
    region: str | None,
) -> tuple[tuple[Action, ...], dict[str, int]]:
    """Actions, and how many secrets are in each state (for the report and metrics)."""
    actions = []
    states: dict[str, int] = {}
    for secret in sorted(secrets, key=lambda s: (s.name, s.region or "")):
        status = statuses.get(secret.run_id) if secret.run_id else None
        state, reason = run_secret_verdict(secret, status, now=now, settings=settings, region=region)
        states[state] = states.get(state, 0) + 1
        if reason:
            actions.append(
                Action(
                    job=NAME,
                    kind=DELETE_SECRET,
                    target=secret.name,
                    reason=reason,
                    reason_code="run-finished" if state == "finished" else "run-expired",
                    run_id=secret.run_id,
                    age_days=age_days(secret.created, now),
                    replica_regions=secret.replica_regions or (),
                    arn=secret.arn,
                )
            )
    return tuple(actions), states


# --- I/O between the pure steps ----------------------------------------------------------


def status_errors(statuses: Mapping[str, RunStatus], source: str) -> tuple[str, ...]:
    return tuple(
        f"run {run_id}: {source} status unavailable ({status.detail}); its secrets are kept"
        for run_id, status in statuses.items()
        if status.state == "error"
    )


def unmatched(secrets: Iterable[RunSecret]) -> tuple[Skipped, ...]:
    """Secrets under a run-secret prefix that no pattern reads a run id from: never guessed at."""
    return tuple(Skipped(name=s.name, reason="has a run-secret prefix but matches no pattern") for s in secrets if s.run_id is None)


def lookup_statuses(source: RunStatusSource, run_ids: Sequence[str]) -> dict[str, RunStatus]:
    """One lookup per run, at most STATUS_CONCURRENCY at a time."""
    if not run_ids:
        return {}
    with ThreadPoolExecutor(max_workers=min(STATUS_CONCURRENCY, len(run_ids)), thread_name_prefix="run-status") as pool:
        return dict(zip(run_ids, pool.map(source.lookup, run_ids), strict=True))


# --- the job ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSecretsObservation:
    secrets: tuple[RunSecret, ...]
    """As listed, with replica regions filled in for those that would be deleted."""
    statuses: Mapping[str, RunStatus]
    source: str
    region: str | None


@dataclass(frozen=True)
class RunSecretsPlan(Plan):
    states: Mapping[str, int] = field(default_factory=frozen_mapping)
    """How many secrets are in each state."""
    secrets: Mapping[str, RunSecret] = field(default_factory=frozen_mapping)
    """The secrets seen, by ARN, for the re-check before each deletion."""
    region: str | None = None

    def document(self) -> dict[str, Any]:
        return {**super().document(), "states": dict(self.states)}


class RunSecretsJob:
    name = NAME
    default_schedule = "20 3 * * *"
    permissions = LISTING_PERMISSIONS + (
        "secretsmanager:TagResource",
        "secretsmanager:RemoveRegionsFromReplication",
        "secretsmanager:DeleteSecret",
    )

    def prepare(self, ctx: RunContext) -> None:
        if not self.regions(ctx):
            raise ConfigError("run-secrets needs a region: set AWS_REGION (or ROTATOR_RUN_SECRETS__REGIONS)")
        self.source(ctx)  # reads token files: a missing one is a configuration error

    def regions(self, ctx: RunContext) -> list[str]:
        return list(ctx.settings.run_secrets.regions or ([ctx.aws.region] if ctx.aws.region else []))

    def source(self, ctx: RunContext) -> RunStatusSource:
        return ctx.shared("run-status-source", lambda: make_source(ctx.settings.run_secrets))

    def observe(self, ctx: RunContext) -> RunSecretsObservation:
        settings, now = ctx.settings.run_secrets, ctx.now
        source = self.source(ctx)
        secrets: list[RunSecret] = []
        for region in self.regions(ctx):
            sm = ctx.aws.client("secretsmanager", region=region)
            secrets += list_run_secrets(sm, patterns=settings.patterns, exclude_prefixes=[ctx.settings.bot_secret_prefix], region=region)
        statuses = lookup_statuses(source, runs_to_look_up(secrets, now=now, settings=settings, region=None))
        to_describe = set(secrets_to_describe(secrets, statuses, now=now, settings=settings, region=None))
        described = tuple(
            describe_replication(ctx.aws.client("secretsmanager", region=s.region), s) if s.arn in to_describe else s for s in secrets
        )
        # What the plan will carry as errors and skips, logged here: planning itself stays pure.
        for message in status_errors(statuses, source.name):
            log.error("run_status.failed", source=source.name, error=message)
        for s in unmatched(described):
            log.warning("secret.skipped", secret=s.name, reason=s.reason)
        for s in described:
            if s.pending_deletion:
                log.info("secret.pending_deletion", secret=s.name, run_id=s.run_id)
        return RunSecretsObservation(described, frozen_mapping(statuses), source.name, None)

    def plan(self, observed: RunSecretsObservation, *, now: datetime, settings: Settings) -> RunSecretsPlan:
        actions, states = plan_run_secrets(
            observed.secrets, observed.statuses, now=now, settings=settings.run_secrets, region=observed.region
        )
        errors = status_errors(observed.statuses, observed.source)
        skipped = unmatched(observed.secrets)
        return RunSecretsPlan(
            job=NAME,
            actions=actions,
            managed=len(observed.secrets),
            skipped=skipped,
            errors=errors,
            inventory_source=f"list-secrets + {observed.source}",
            states=frozen_mapping(states),
            secrets=frozen_mapping({s.arn: s for s in observed.secrets}),
            region=observed.region,
        )

    def execute(self, plan: RunSecretsPlan, ctx: RunContext) -> Iterator[Outcome]:
        recheck = _Recheck(self.source(ctx), plan, settings=ctx.settings.run_secrets, clock=ctx.clock)
        recovery_days = ctx.settings.run_secrets.recovery_window_days

        def delete(actions: Sequence[Action]) -> Iterator[Outcome]:
            (action,) = actions
            changed = recheck(action)
            if changed:
                yield Outcome(action, SKIPPED, changed)
                return
            when = ctx.clock().isoformat()
            sm = ctx.aws.client("secretsmanager", region=plan.secrets[action.arn].region)
            yield attempt(action, lambda: _delete_secret(sm, action, when, recovery_days), already_done={"ResourceNotFoundException"})

        def one_run(actions: list[Action]) -> list[Outcome]:
            return list(per_unit(((a.target, [a]) for a in actions), delete))  # one run's secrets in order

        runs = [list(group) for _, group in groupby(sorted(plan.actions, key=lambda a: a.run_id or ""), key=lambda a: a.run_id)]
        # Outcomes in plan order, each as soon as it and every one before it are in (runs finish in their own order).
        done: dict[int, Outcome] = {}
        pending = iter(plan.actions)
        waiting = next(pending, None)
        for outcomes in ordered_map(one_run, runs, workers=ctx.settings.aws.concurrency):
            done.update({id(o.action): o for o in outcomes})
            while waiting is not None and id(waiting) in done:
                yield done.pop(id(waiting))
                waiting = next(pending, None)
        assert waiting is None, "every planned secret has an outcome (per_unit gives each one)"

    def record_metrics(self, metrics: Metrics, result: JobResult, *, now: datetime, settings: Settings) -> None:
        plan: RunSecretsPlan = result.plan
        for state in STATES:
            metrics.run_secrets.labels(state).set(plan.states.get(state, 0))
        for _ in plan.errors:
            metrics.status_errors.labels(settings.run_secrets.status_source).inc()

    def describe(self, plan: RunSecretsPlan) -> str:
        states = ", ".join(f"{n} {k}" for k, n in sorted(plan.states.items()))
        return f"{plan.managed} secrets" + (f" ({states})" if states else "")


def _delete_secret(sm, action: Action, when: str, recovery_window_days: int) -> None:
    # By ARN: a secret deleted and re-created under the same name since the listing is not this one.
    secret_id = action.arn or action.target
    sm.tag_resource(
        SecretId=secret_id,
        Tags=[{"Key": DELETED_FOR_RUN_TAG, "Value": action.run_id}, {"Key": DELETED_AT_TAG, "Value": when}],
    )
    if action.replica_regions:
        # DeleteSecret refuses a secret that still has replicas.
        sm.remove_regions_from_replication(SecretId=secret_id, RemoveReplicaRegions=list(action.replica_regions))
    try:
        if recovery_window_days:
            sm.delete_secret(SecretId=secret_id, RecoveryWindowInDays=recovery_window_days)
        else:
            sm.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    except ClientError as exc:
        # A retry after an answer that was lost: the first attempt did it.
        if not (error_code(exc) == "InvalidRequestException" and "marked" in str(exc) and "delet" in str(exc)):
            raise


class _Recheck:
    """Looks a run up again just before its secrets are deleted (once per run per invocation)."""

    def __init__(self, source: RunStatusSource, plan: RunSecretsPlan, *, settings: RunSecretsSettings, clock) -> None:
        self._source = source
        self._plan = plan
        self._settings = settings
        self._clock = clock
        self._fresh: dict[str, RunStatus] = {}

    def __call__(self, action: Action) -> str | None:
        """Why the planned deletion no longer holds, or None."""
        if action.run_id not in self._fresh:
            self._fresh[action.run_id] = self._source.lookup(action.run_id)
        status = self._fresh[action.run_id]
        secret = self._plan.secrets[action.arn]
        _, reason = run_secret_verdict(secret, status, now=self._clock(), settings=self._settings, region=self._plan.region)
        if reason is None:
            return f"kept: run {action.run_id} is now {status.state} ({status.detail})"
        return None


JOB = RunSecretsJob()
