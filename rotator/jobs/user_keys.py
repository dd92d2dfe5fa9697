"""user-keys: delete end users' access keys that Gen3Workflow shows as expired.

Exactly what the service calls expired, no earlier: ``Inactive`` (unless
``ROTATOR_USER_KEYS__DELETE_INACTIVE=false``), or more whole days old than the lifetime.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rotator.concurrency import Progress, ordered_map
from rotator.jobs import _keys
from rotator.jobs._keys import KeyObservation, KeyPlan
from rotator.jobs.base import RunContext
from rotator.model import Action, Outcome, ReportedKey, UserKeys
from rotator.planner import delete_key, expiry_reason

if TYPE_CHECKING:
    from rotator.metrics import Metrics
    from rotator.runner import JobResult
    from rotator.settings import Settings, UserKeysSettings

NAME = "user-keys"


def user_may_need_action(reported: Sequence[ReportedKey], *, now: datetime, settings: UserKeysSettings) -> bool:
    """Whether the credential report shows a key this job might delete (then ListAccessKeys confirms)."""
    return any(
        expiry_reason(k, now=now, lifetime_days=settings.lifetime_days, inactive_expires=settings.delete_inactive)
        for k in reported
    )


def plan_user_keys(states: Iterable[UserKeys], *, now: datetime, settings: UserKeysSettings) -> tuple[Action, ...]:
    actions = []
    for state in sorted(states, key=lambda s: s.user.name):
        for key in _keys.sorted_keys(state.keys):
            reason = expiry_reason(key, now=now, lifetime_days=settings.lifetime_days, inactive_expires=settings.delete_inactive)
            if reason:
                actions.append(delete_key(NAME, state.user, key, reason, now=now))
    return tuple(actions)


class UserKeysJob:
    name = NAME
    default_schedule = "0 3 * * *"
    permissions = _keys.PERMISSIONS

    def prepare(self, ctx: RunContext) -> None:
        pass

    def observe(self, ctx: RunContext) -> KeyObservation:
        settings = ctx.settings.user_keys
        account = ctx.account
        users, candidates = _keys.candidates(
            account, "user", lambda _user, reported: user_may_need_action(reported, now=ctx.now, settings=settings)
        )
        confirmed, candidates, errors = _keys.confirm(account, candidates, job=NAME, workers=ctx.settings.aws.concurrency)
        return KeyObservation(users, candidates, account.report, confirmed, account.skipped, account.source, errors)

    def plan(self, observed: KeyObservation, *, now: datetime, settings: Settings) -> KeyPlan:
        actions = plan_user_keys(
            [UserKeys(u, observed.confirmed[u.name]) for u in observed.candidates], now=now, settings=settings.user_keys
        )
        return _keys.key_plan(NAME, observed, actions)

    def execute(self, plan: KeyPlan, ctx: RunContext) -> Iterator[Outcome]:
        iam = ctx.aws.client("iam")
        progress = Progress(_keys.log, job=NAME, phase="deleting keys", total=len(plan.actions))
        for outcome in ordered_map(lambda a: _keys.delete_access_key(iam, a), plan.actions, workers=ctx.settings.aws.concurrency):
            progress.tick()
            yield outcome

    def record_metrics(self, metrics: Metrics, result: JobResult, *, now: datetime, settings: Settings) -> None:
        _keys.record_key_metrics(metrics, result, kind="user", lifetime=settings.user_keys.lifetime_days, now=now)

    def describe(self, plan: KeyPlan) -> str:
        return _keys.describe(plan)


JOB = UserKeysJob()
