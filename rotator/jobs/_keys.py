"""What the two access-key jobs share: their plan's shape, key deletion, key metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from rotator import inventory
from rotator.concurrency import Progress
from rotator.executor import attempt
from rotator.jobs.base import Plan, frozen_mapping
from rotator.model import CREATE_KEY, DELETE_KEY, DONE, AccessKey, Action, ManagedUser, Outcome, ReportedKey, Skipped
from rotator.planner import age_days

if TYPE_CHECKING:
    from rotator.metrics import Metrics
    from rotator.runner import JobResult

log = structlog.get_logger("rotator.jobs")

PERMISSIONS = inventory.PERMISSIONS + ("iam:DeleteAccessKey",)

KEY_STATES = ("live", "expired", "inactive")
EXPIRY_WINDOWS_DAYS = (1, 3, 7, 14)


@dataclass(frozen=True)
class KeyObservation:
    """Managed users of one kind, the report's view of their keys, and the keys confirmed by ListAccessKeys."""

    users: tuple[ManagedUser, ...]
    candidates: tuple[ManagedUser, ...]
    """The users that may need action (all of them without a credential report)."""
    report: Mapping[str, tuple[ReportedKey, ...]] | None
    confirmed: Mapping[str, tuple[AccessKey, ...]]
    skipped: tuple[Skipped, ...]
    source: str
    errors: tuple[str, ...] = ()
    """Users left alone this run because something about them could not be read."""


@dataclass(frozen=True)
class KeyPlan(Plan):
    managed_users: int = 0
    observed_keys: Mapping[str, tuple[AccessKey | ReportedKey, ...]] = field(default_factory=frozen_mapping)
    """The freshest view of each managed user's keys: confirmed where listed, else the report."""

    def document(self) -> dict[str, Any]:
        return {"managed_users": self.managed_users, **super().document()}


def confirm(account: inventory.AccountSnapshot, candidates: tuple[ManagedUser, ...], *, job: str, workers: int):
    """Confirmed keys of the candidates that could be listed, those candidates, and errors for the rest."""
    progress = Progress(log, job=job, phase="confirming keys", total=len(candidates))
    confirmed, failed = inventory.confirm_keys(account.iam, candidates, workers=workers, progress=progress)
    listed = tuple(u for u in candidates if u.name in confirmed)
    return confirmed, listed, tuple(f"{name}: keys could not be listed: {why}" for name, why in failed.items())


def key_plan(job: str, observation: KeyObservation, actions: tuple[Action, ...]) -> KeyPlan:
    """A key job's plan: its actions and what it saw (the base of the deletion-fraction brake)."""
    keys = observed_keys(observation)
    return KeyPlan(
        job=job,
        actions=actions,
        managed=sum(len(k) for k in keys.values()),
        skipped=observation.skipped,
        errors=observation.errors,
        inventory_source=observation.source,
        managed_users=len(observation.users),
        observed_keys=keys,
    )


def observed_keys(observation: KeyObservation) -> Mapping[str, tuple[AccessKey | ReportedKey, ...]]:
    report = observation.report or {}
    return frozen_mapping({u.name: observation.confirmed.get(u.name, report.get(u.name, ())) for u in observation.users})


def users_of_kind(account: inventory.AccountSnapshot, kind: str) -> tuple[ManagedUser, ...]:
    return tuple(u for u in account.users if u.kind == kind)


def candidates(
    account: inventory.AccountSnapshot, kind: str, may_need_action: Callable[[ManagedUser, Sequence[ReportedKey]], bool]
) -> tuple[tuple[ManagedUser, ...], tuple[ManagedUser, ...]]:
    """The managed users of ``kind``, and those worth a ListAccessKeys: the ones the credential
    report says ``may_need_action``, or all of them when there is no report."""
    users = users_of_kind(account, kind)
    report = account.report
    if report is None:
        return users, users
    return users, tuple(u for u in users if may_need_action(u, report.get(u.name, ())))


def delete_access_key(iam, action: Action) -> Outcome:
    """Delete one key; a key already gone counts as deleted."""
    return attempt(
        action, lambda: iam.delete_access_key(UserName=action.user, AccessKeyId=action.key_id), already_done={"NoSuchEntity"}
    )


def describe(plan: KeyPlan) -> str:
    return f"{plan.managed_users} users, {plan.managed} keys"


def key_state(key: AccessKey | ReportedKey, *, now: datetime, lifetime: int) -> str:
    if not key.active:
        return "inactive"
    return "expired" if age_days(key.created, now) > lifetime else "live"


def record_key_metrics(metrics: Metrics, result: JobResult, *, kind: str, lifetime: int, now: datetime) -> None:
    """Key gauges as the run left the account: deleted keys are gone, created keys are live."""
    plan: KeyPlan = result.plan
    metrics.managed_users.labels(kind).set(plan.managed_users)
    metrics.key_lifetime.labels(kind).set(timedelta(days=lifetime).total_seconds())
    deleted = {o.action.key_id for o in result.outcomes if o.result == DONE and o.action.kind == DELETE_KEY}
    created = sum(1 for o in result.outcomes if o.result == DONE and o.action.kind == CREATE_KEY)
    states: Counter[str] = Counter()
    live_created: list[datetime] = [now] * created
    for keys in plan.observed_keys.values():
        for key in keys:
            if isinstance(key, AccessKey) and key.key_id in deleted:
                continue
            state = key_state(key, now=now, lifetime=lifetime)
            states[state] += 1
            if state == "live":
                live_created.append(key.created)
    states["live"] += created
    for state in KEY_STATES:
        metrics.access_keys.labels(kind, state).set(states[state])
    for window in EXPIRY_WINDOWS_DAYS:
        # A key expires once its whole-day age exceeds the lifetime: at created + lifetime + 1 days.
        expiring = sum(1 for c in live_created if c + timedelta(days=lifetime + 1) - now <= timedelta(days=window))
        metrics.keys_expiring.labels(kind, str(window)).set(expiring)
    metrics.oldest_key_age.labels(kind).set(max(((now - c).total_seconds() for c in live_created), default=0))


def sorted_keys(keys: Iterable[AccessKey]) -> list[AccessKey]:
    return sorted(keys, key=lambda k: (k.created, k.key_id))
