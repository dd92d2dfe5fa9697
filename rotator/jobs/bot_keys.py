"""bot-keys: two live, stored, staggered access keys on every bot user.

Per bot user: delete expired and inactive keys, and keys whose secret was never stored
once past the grace period; when two keys remain and the newest is lifetime/2 old,
delete the older; then create keys until two are live, storing each new secret where
the service reads it. Keys leave the store before they leave IAM, and a key whose
secret cannot be stored is taken back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING

import structlog

from rotator import inventory
from rotator.aws import describe_error, error_code
from rotator.executor import record
from rotator.jobs import _keys
from rotator.jobs._keys import KeyObservation, KeyPlan
from rotator.jobs.base import RunContext, frozen_mapping
from rotator.keystore import BotKeyStore, make_store
from rotator.model import (
    CREATE_KEY,
    DELETE_KEY,
    DONE,
    FAILED,
    FORGET_KEY,
    SKIPPED,
    AccessKey,
    Action,
    BotState,
    NewKey,
    Outcome,
    ReportedKey,
)
from rotator.planner import delete_key, expiry_reason, fmt_age, key_target

if TYPE_CHECKING:
    from rotator.metrics import Metrics
    from rotator.runner import JobResult
    from rotator.settings import BotKeysSettings, Settings

log = structlog.get_logger("rotator.jobs.bot_keys")

NAME = "bot-keys"
KEYS_PER_BOT = 2  # AWS allows two keys per IAM user; the service wants two live bot keys


# --- planning (pure) ------------------------------------------------------------------


def rotation_age(settings: BotKeysSettings) -> timedelta:
    return timedelta(days=settings.lifetime_days / 2)


def bot_may_need_action(
    reported: Sequence[ReportedKey], *, stored_count: int | None, now: datetime, settings: BotKeysSettings
) -> bool:
    """True unless the report shows two live, stored keys with no rotation due.

    ``stored_count`` is the store's cheap index of how many keys it holds (None: no entry).
    """
    if len(reported) != KEYS_PER_BOT or stored_count != len(reported):
        return True
    if any(expiry_reason(k, now=now, lifetime_days=settings.lifetime_days) for k in reported):
        return True
    newest = max(k.created for k in reported)
    return now - newest >= rotation_age(settings)


def plan_bot_user(state: BotState, *, now: datetime, settings: BotKeysSettings) -> tuple[Action, ...]:
    """Keep two live, stored, staggered keys on one bot user.

    1. delete expired and inactive keys, and keys whose secret was never stored (past
       the grace period: the secret is gone, the key can never be used);
    2. if two keys remain and the newest is at least lifetime/2 old, delete the older;
    3. create keys until two are live.
    The newest key is thus always less than lifetime/2 old after a run, and when keys
    start out made together (or absent), rotation staggers them.
    """
    user = state.user
    grace = timedelta(minutes=settings.orphan_grace_minutes)
    deletions: list[Action] = []
    kept: list[AccessKey] = []
    for key in _keys.sorted_keys(state.keys):
        reason = expiry_reason(key, now=now, lifetime_days=settings.lifetime_days)
        if reason is None and key.key_id not in state.stored_key_ids:
            age = now - key.created
            if age >= grace:
                reason = f"orphan: secret not stored, {fmt_age(age)} old >= {settings.orphan_grace_minutes}m grace"
        if reason:
            deletions.append(delete_key(NAME, user, key, reason))
        else:
            kept.append(key)

    if len(kept) == KEYS_PER_BOT:
        older, newest = kept
        newest_age = now - newest.created
        if newest_age >= rotation_age(settings):
            reason = (
                f"rotation: newest key {fmt_age(newest_age)} >= {settings.lifetime_days / 2:g}d"
                f" (lifetime {settings.lifetime_days}d / 2)"
            )
            deletions.append(delete_key(NAME, user, older, reason))
            kept.remove(older)

    live_ids = {k.key_id for k in state.keys}
    forgets = [
        Action(
            job=NAME,
            kind=FORGET_KEY,
            target=key_target(user, key_id),
            reason="stored key no longer exists in IAM",
            user=user.name,
            key_id=key_id,
        )
        for key_id in sorted(state.stored_key_ids - live_ids)
    ]

    creates = [
        Action(
            job=NAME,
            kind=CREATE_KEY,
            target=user.name,
            reason=f"{len(kept) + i} of {KEYS_PER_BOT} live keys" if len(kept) + i else "no live key",
            user=user.name,
        )
        for i in range(KEYS_PER_BOT - len(kept))
    ]
    return tuple(deletions + forgets + creates)


def plan_bot_keys(states: Iterable[BotState], *, now: datetime, settings: BotKeysSettings) -> tuple[Action, ...]:
    actions: list[Action] = []
    for state in sorted(states, key=lambda s: s.user.name):
        actions.extend(plan_bot_user(state, now=now, settings=settings))
    return tuple(actions)


# --- the job ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BotKeysObservation(KeyObservation):
    stored: Mapping[str, frozenset[str]] = field(default_factory=frozen_mapping)
    """Key ids the store holds per candidate; a candidate whose store could not be read is absent."""
    errors: tuple[str, ...] = ()


class BotKeysJob:
    name = NAME
    default_schedule = "10 3 * * *"
    permissions = _keys.PERMISSIONS + ("iam:CreateAccessKey",)

    def prepare(self, ctx: RunContext) -> None:
        self.store(ctx)

    def store(self, ctx: RunContext) -> BotKeyStore:
        return ctx.shared("bot-key-store", lambda: make_store(ctx.settings, ctx.aws))

    def observe(self, ctx: RunContext) -> BotKeysObservation:
        settings = ctx.settings.bot_keys
        store = self.store(ctx)
        account = ctx.account
        bots = _keys.users_of_kind(account, "bot")
        report = account.report
        if report is None:
            candidates = bots
        else:
            index = store.index()
            candidates = tuple(
                b
                for b in bots
                if bot_may_need_action(report.get(b.name, ()), stored_count=index.get(b.name), now=ctx.now, settings=settings)
            )
        confirmed = inventory.confirm_keys(account.iam, candidates)
        stored, errors = {}, []
        for bot in candidates:
            try:
                stored[bot.name] = store.stored_key_ids(bot.name)
            except Exception as exc:  # noqa: BLE001 - this bot alone is left alone
                # Without the store's view we cannot tell an orphan from a good key: leave this user alone.
                errors.append(f"{bot.name}: store unreadable: {describe_error(exc)}")
                log.error("store.read_failed", user=bot.name, error=describe_error(exc))
        return BotKeysObservation(
            bots, candidates, report, confirmed, account.skipped, account.source, stored=frozen_mapping(stored), errors=tuple(errors)
        )

    def plan(self, observed: BotKeysObservation, *, now: datetime, settings: Settings) -> KeyPlan:
        states = [
            BotState(b, observed.confirmed[b.name], observed.stored[b.name]) for b in observed.candidates if b.name in observed.stored
        ]
        keys = _keys.observed_keys(observed)
        return KeyPlan(
            job=NAME,
            actions=plan_bot_keys(states, now=now, settings=settings.bot_keys),
            managed=sum(len(k) for k in keys.values()),
            skipped=observed.skipped,
            errors=observed.errors,
            inventory_source=observed.source,
            managed_users=len(observed.users),
            observed_keys=keys,
        )

    def execute(self, plan: KeyPlan, ctx: RunContext) -> list[Outcome]:
        bot = _BotUserExecution(ctx.aws.client("iam"), self.store(ctx))
        outcomes: list[Outcome] = []
        for user, actions in groupby(plan.actions, key=lambda a: a.user):
            outcomes.extend(bot.apply(user, list(actions)))
        return outcomes

    def record_metrics(self, metrics: Metrics, result: JobResult, *, now: datetime, settings: Settings) -> None:
        _keys.record_key_metrics(metrics, result, kind="bot", lifetime=settings.bot_keys.lifetime_days, now=now)
        metrics.bot_users_unhealthy.set(unhealthy_bots(result))

    def describe(self, plan: KeyPlan) -> str:
        return _keys.describe(plan)


def unhealthy_bots(result: JobResult) -> int:
    """Bot users the run did not leave with two live, stored keys."""
    plan = result.plan
    if result.brake:
        return len({a.user for a in plan.actions}) + len(plan.errors)
    not_done = {o.action.user for o in result.outcomes if o.result != DONE}
    return len(not_done) + len(plan.errors)


class _BotUserExecution:
    """Applies one bot user's actions: store first, then IAM, then new keys."""

    def __init__(self, iam, store: BotKeyStore) -> None:
        self._iam = iam
        self._store = store

    def apply(self, user: str, actions: list[Action]) -> list[Outcome]:
        deletes = [a for a in actions if a.kind == DELETE_KEY]
        forgets = [a for a in actions if a.kind == FORGET_KEY]
        creates = [a for a in actions if a.kind == CREATE_KEY]
        outcomes: list[Outcome] = []

        # Forget keys in the store before deleting them in IAM: the service must never
        # hand out a key that no longer exists. If IAM then fails, the key is an orphan
        # that a later run deletes.
        to_forget = {a.key_id for a in deletes + forgets}
        if to_forget:
            try:
                self._store.remove(user, to_forget)
            except Exception as exc:  # noqa: BLE001 - this user's actions fail, the others go on
                error = f"store: {describe_error(exc)}"
                outcomes += [record(Outcome(a, FAILED, error)) for a in deletes + forgets]
                outcomes += [record(Outcome(a, SKIPPED, "not attempted: the store could not be updated")) for a in creates]
                return outcomes
        outcomes += [record(Outcome(a, DONE)) for a in forgets]
        outcomes += [_keys.delete_access_key(self._iam, a) for a in deletes]

        if any(o.result == FAILED for o in outcomes):
            # The two-key quota would refuse the new key anyway.
            outcomes += [record(Outcome(a, SKIPPED, "not attempted: a deletion for this user failed")) for a in creates]
            return outcomes
        outcomes += [self._create_key(a) for a in creates]
        return outcomes

    def _create_key(self, action: Action) -> Outcome:
        try:
            created = self._iam.create_access_key(UserName=action.user)["AccessKey"]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "LimitExceeded":
                return self._after_limit_exceeded(action)
            return record(Outcome(action, FAILED, describe_error(exc)))

        key = NewKey(user=action.user, key_id=created["AccessKeyId"], created=created["CreateDate"], secret=created["SecretAccessKey"])
        del created
        try:
            self._store.add(key)
        except Exception as exc:  # noqa: BLE001
            return record(Outcome(action, FAILED, f"store: {describe_error(exc)}{self._roll_back(key)}"))
        log.info("key.stored", user=key.user, key_id=key.key_id, store=self._store.name)
        return record(Outcome(action, DONE))

    def _roll_back(self, key: NewKey) -> str:
        """A key whose secret is not stored can never be used: take it back. Returns what to add to the error."""
        try:
            self._iam.delete_access_key(UserName=key.user, AccessKeyId=key.key_id)
        except Exception as exc:  # noqa: BLE001
            log.error(
                "key.rollback_failed",
                user=key.user,
                key_id=key.key_id,
                error=describe_error(exc),
                hint="the key is an orphan; the next bot-keys run deletes it after the grace period",
            )
            return f"; rollback failed: {describe_error(exc)}"
        log.warning("key.rolled_back", user=key.user, key_id=key.key_id, reason="secret could not be stored")
        return ""

    def _after_limit_exceeded(self, action: Action) -> Outcome:
        # Another actor created a key between our listing and now: look again.
        try:
            keys = inventory.list_access_keys(self._iam, action.user)
        except Exception as exc:  # noqa: BLE001
            return record(Outcome(action, FAILED, f"LimitExceeded, then {describe_error(exc)}"))
        if sum(1 for k in keys if k.active) >= KEYS_PER_BOT:
            return record(Outcome(action, SKIPPED, "user already has two keys (created concurrently); next run re-plans"))
        return record(Outcome(action, FAILED, f"LimitExceeded with {len(keys)} keys listed"))


JOB = BotKeysJob()
