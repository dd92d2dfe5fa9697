"""bot-keys: two live, stored, staggered access keys on every bot user.

Per bot user: delete expired and inactive keys, and keys whose secret was never stored
once past the grace period; when two keys remain and the newest is lifetime/2 old,
delete the older; then create keys until two are live, storing each new secret where
the service reads it. Keys leave the store before they leave IAM, and a key whose
secret cannot be stored is taken back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING

import structlog

from rotator import inventory
from rotator.aws import SafeError, describe_error, error_code, is_ambiguous, is_throttling
from rotator.concurrency import Progress, ordered_map
from rotator.errors import ConfigError
from rotator.executor import per_unit
from rotator.jobs import _keys
from rotator.jobs._keys import KeyObservation, KeyPlan
from rotator.jobs.base import RunContext, frozen_mapping
from rotator.keystore import BotKeyStore, WouldEmptyStore, make_store
from rotator.keystore.secretsmanager import SecretsManagerStore
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
from rotator.verify import Verification, verify_key

if TYPE_CHECKING:
    from rotator.metrics import Metrics
    from rotator.runner import JobResult
    from rotator.settings import BotKeysSettings, Settings

log = structlog.get_logger("rotator.jobs.bot_keys")

NAME = "bot-keys"
KEYS_PER_BOT = 2  # AWS allows two keys per IAM user; the service wants two live bot keys
CONCURRENT = "another runner is changing this user's keys (it finishes the job); the next run re-plans"
VERIFY_NOTE = ", verified before use"  # sts:GetCallerIdentity with the new key, before readers can take it


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


def plan_bot_user(state: BotState, *, now: datetime, settings: BotKeysSettings, adopting: bool = False) -> tuple[Action, ...]:
    """Keep two live, stored, staggered keys on one bot user, make-before-break.

    Which keys go: expired and inactive keys, keys whose secret was never stored (past
    the grace period: the secret is gone, the key can never be used), and, if two keys
    remain and the newest is at least lifetime/2 old, the older. Then keys are created
    until two are live. The newest key is thus always less than lifetime/2 old after a
    run, and when keys start out made together (or absent), rotation staggers them.

    ``adopting``: rotator is taking this user over (its store holds none of the user's
    keys, so rotator did not create them): its unstored keys are the same deletions,
    named ``adopt: replace`` rather than ``orphan`` (a leftover of rotator's own), so that
    a first run on an existing deployment says what it is doing.

    In what order: store entries of keys IAM no longer has are forgotten, unstored keys
    deleted; then, while the two-key quota allows, a new key is created (and stored)
    *before* a stored key it replaces is deleted, one at a time. So the store's first
    entry names a live key at every step of the run.
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
                found = "adopt: replace, not created by rotator (not in its store)" if adopting else "orphan: secret not stored"
                reason = f"{found}, {fmt_age(age)} old >= {settings.orphan_grace_minutes}m grace"
        if reason:
            deletions.append(delete_key(NAME, user, key, reason, now=now))
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
            deletions.append(delete_key(NAME, user, older, reason, now=now))
            kept.remove(older)

    live_ids = {k.key_id for k in state.keys}
    forgets = [
        Action(
            job=NAME,
            kind=FORGET_KEY,
            target=key_target(user, key_id),
            reason="stored key no longer exists in IAM",
            reason_code="stale-entry",
            user=user.name,
            key_id=key_id,
        )
        for key_id in sorted(state.stored_key_ids - live_ids)
    ]
    unstored = [d for d in deletions if d.key_id not in state.stored_key_ids]
    active = {k.key_id for k in state.keys if k.active}
    # Stored keys that cannot be used go first: the usable ones stand until replaced.
    stored = sorted((d for d in deletions if d.key_id in state.stored_key_ids), key=lambda d: d.key_id in active)

    ordered: list[Action] = forgets + unstored
    free = KEYS_PER_BOT - len(state.keys) + len(unstored)  # room under the quota
    live = len(kept)
    while live < KEYS_PER_BOT or stored:
        if live < KEYS_PER_BOT and free > 0:
            ordered.append(
                Action(
                    job=NAME,
                    kind=CREATE_KEY,
                    target=user.name,
                    reason_code="missing-key",
                    reason=(f"{live} of {KEYS_PER_BOT} live keys" if live else "no live key")
                    + (VERIFY_NOTE if settings.verify_timeout_seconds else ""),
                    user=user.name,
                )
            )
            live, free = live + 1, free - 1
        elif stored:
            ordered.append(stored.pop(0))
            free += 1
        else:
            break
    return tuple(ordered)


def plan_bot_keys(
    states: Iterable[BotState], *, now: datetime, settings: BotKeysSettings, adopting: Collection[str] = ()
) -> tuple[Action, ...]:
    """Every bot user's plan; ``adopting`` names the users rotator is taking over (see :func:`plan_bot_user`)."""
    actions: list[Action] = []
    for state in sorted(states, key=lambda s: s.user.name):
        actions.extend(plan_bot_user(state, now=now, settings=settings, adopting=state.user.name in adopting))
    return tuple(actions)


# --- the job ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BotKeysObservation(KeyObservation):
    stored: Mapping[str, frozenset[str]] = field(default_factory=frozen_mapping)
    """Key ids the store holds per candidate; a candidate whose store could not be read is absent."""


class BotKeysJob:
    name = NAME
    default_schedule = "10 3 * * *"
    permissions = _keys.PERMISSIONS + ("iam:CreateAccessKey",) + SecretsManagerStore.permissions

    def prepare(self, ctx: RunContext) -> None:
        store = self.store(ctx)  # ConfigError: an unusable store setting (exit 2)
        check = getattr(store, "check", None)
        if check is not None:
            try:
                check()  # a missing table or a wrong ENCRYPTION_KEY is a ConfigError: exit 2, nothing touched
            except ConfigError:
                raise
            except SafeError as exc:
                # Unreachable: this job fails (exit 1) when it observes; the other jobs go on.
                log.warning("store.unavailable", store=store.name, error=describe_error(exc))

    def store(self, ctx: RunContext) -> BotKeyStore:
        return ctx.shared("bot-key-store", lambda: make_store(ctx.settings, ctx.aws))

    def observe(self, ctx: RunContext) -> BotKeysObservation:
        settings = ctx.settings.bot_keys
        store = self.store(ctx)
        if hasattr(store, "check"):
            store.check()  # once passed, cached; raises when the database cannot be reached
        account = ctx.account
        index = store.index() if account.report is not None else {}  # without the report every bot is looked at
        bots, candidates = _keys.candidates(
            account, "bot",
            lambda bot, reported: bot_may_need_action(reported, stored_count=index.get(bot.name), now=ctx.now, settings=settings),
        )
        confirmed, candidates, listing_errors = _keys.confirm(account, candidates, job=NAME, workers=ctx.settings.aws.concurrency)
        stored, errors = {}, list(listing_errors)

        def read_store(bot):
            try:
                return bot.name, store.stored_key_ids(bot.name), None
            except Exception as exc:  # noqa: BLE001 - this bot alone is left alone
                return bot.name, None, describe_error(exc)

        for name, ids, error in ordered_map(read_store, candidates, workers=ctx.settings.aws.concurrency):
            if error is None:
                stored[name] = ids
            else:
                # Without the store's view we cannot tell an orphan from a good key: leave this user alone.
                errors.append(f"{name}: store unreadable: {error}")
                log.error("store.read_failed", user=name, error=error)
        return BotKeysObservation(
            bots, candidates, account.report, confirmed, account.skipped, account.source, errors=tuple(errors), stored=frozen_mapping(stored)
        )

    def plan(self, observed: BotKeysObservation, *, now: datetime, settings: Settings) -> KeyPlan:
        states = [
            BotState(b, observed.confirmed[b.name], observed.stored[b.name]) for b in observed.candidates if b.name in observed.stored
        ]
        # A store holding none of a user's keys: rotator did not create them (its first run here, or a new user).
        adopting = {s.user.name for s in states if not s.stored_key_ids}
        return _keys.key_plan(NAME, observed, plan_bot_keys(states, now=now, settings=settings.bot_keys, adopting=adopting))

    def execute(self, plan: KeyPlan, ctx: RunContext) -> Iterator[Outcome]:
        before = {
            user: frozenset(k.key_id for k in keys if isinstance(k, AccessKey)) for user, keys in plan.observed_keys.items()
        }
        timeout = ctx.settings.bot_keys.verify_timeout_seconds

        def verify(key: NewKey) -> Verification:
            return verify_key(ctx.aws, key, account_id=ctx.account_id, timeout_seconds=timeout)

        bot = _BotUserExecution(
            ctx.aws.client("iam"), ctx.aws.client("iam", retries=False), self.store(ctx), before=before, verify=verify
        )
        users = [(user, list(actions)) for user, actions in groupby(plan.actions, key=lambda a: a.user)]
        progress = Progress(log, job=NAME, phase="bot users", total=len(users))

        def one_user(unit: tuple[str, list[Action]]) -> list[Outcome]:
            return list(per_unit([unit], bot.apply))  # each user's own sequence strictly in order

        # Different users in parallel; outcomes come back in plan order.
        for outcomes in ordered_map(one_user, users, workers=ctx.settings.aws.concurrency):
            progress.tick()
            yield from outcomes

    def record_metrics(self, metrics: Metrics, result: JobResult, *, now: datetime, settings: Settings) -> None:
        _keys.record_key_metrics(metrics, result, kind="bot", lifetime=settings.bot_keys.lifetime_days, now=now)
        metrics.bot_users_unhealthy.set(unhealthy_bots(result))
        for outcome in result.outcomes:
            if outcome.verification is not None and outcome.verification.attempts:
                metrics.key_verification_seconds.observe(outcome.verification.seconds)
                if not outcome.verification.ok:
                    metrics.key_verification_failures.labels(outcome.verification.reason).inc()

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
    """Carries out one bot user's actions in their planned (make-before-break) order.

    A key leaves the store before it leaves IAM, and never as the store's last entry. A new
    key is created with a single attempt: after an answer that may have been lost, the
    user's keys are listed again, a key that appeared unstored (its secret is unknowable)
    is deleted, and the key is created again within the quota. After an ambiguous store
    write the store is read again: a key that landed is kept, one that did not is taken
    back. After the first failure, the user's remaining actions are not attempted: the
    next run re-plans from what is there.
    """

    CREATE_ATTEMPTS = 3
    THROTTLE_RETRIES = 5

    def __init__(
        self, iam, create_iam, store: BotKeyStore, *, before: dict[str, frozenset[str]], verify: Callable[[NewKey], Verification],
        sleep=time.sleep,
    ) -> None:
        self._iam = iam
        self._create_iam = create_iam  # single attempt: CreateAccessKey is not idempotent
        self._store = store
        self._before = before
        self._verify = verify
        self._sleep = sleep

    def apply(self, actions: Sequence[Action]) -> Iterator[Outcome]:
        """One bot user's actions, in order; each outcome as it happens."""
        stopped = None
        for action in actions:
            if stopped:
                yield Outcome(action, SKIPPED, f"not attempted: {stopped}")
                continue
            if action.kind == FORGET_KEY:
                outcome = self._forget_stale(action)
            elif action.kind == DELETE_KEY:
                outcome = self._delete(action)
            else:
                outcome = self._create_key(action)
            yield outcome
            if outcome.result == FAILED:
                stopped = "an earlier action for this user failed"
            elif outcome.result == SKIPPED and action.kind == DELETE_KEY:
                stopped = "the key it replaces was kept"
            elif outcome.result == SKIPPED and outcome.error == CONCURRENT:
                stopped = "another runner is working on this user"

    # --- the store first ------------------------------------------------------------

    def _forget(self, action: Action, *, keep_one: bool = False) -> Outcome | None:
        """Forget one key in the store; None when it is forgotten (or was never stored)."""
        try:
            self._store.remove(action.user, {action.key_id}, keep_one=keep_one)
        except WouldEmptyStore as exc:
            return Outcome(action, SKIPPED, f"kept: {exc}; the next run replaces it")
        except Exception as exc:  # noqa: BLE001 - maybe it landed: look before deciding
            if self._still_stored(action) is False:
                log.info("store.write_landed", user=action.user, key_id=action.key_id, after=describe_error(exc))
            else:
                return Outcome(action, FAILED, f"store: {describe_error(exc)}")
        return None if action.kind == DELETE_KEY else Outcome(action, DONE)

    def _forget_stale(self, action: Action) -> Outcome:
        """Forget a stored key IAM did not list, once IAM confirms it is gone: another runner may
        have created and stored it after this run listed the user's keys."""
        try:
            present = any(k.key_id == action.key_id for k in inventory.list_access_keys(self._iam, action.user))
        except Exception as exc:  # noqa: BLE001
            return Outcome(action, FAILED, f"re-listing the keys: {describe_error(exc)}")
        if present:
            return Outcome(action, SKIPPED, "kept: the key exists in IAM (created since this run listed the keys)")
        return self._forget(action)

    def _still_stored(self, action: Action) -> bool | None:
        try:
            return action.key_id in self._store.stored_key_ids(action.user)
        except Exception:  # noqa: BLE001
            return None

    def _delete(self, action: Action) -> Outcome:
        # Forget it in the store before deleting it in IAM: the service must never hand out
        # a key that no longer exists. If IAM then fails, the key is an orphan that a later
        # run deletes.
        refused = self._forget(action, keep_one=True)
        if refused is not None:
            return refused
        return _keys.delete_access_key(self._iam, action)

    # --- new keys -------------------------------------------------------------------

    def _create_key(self, action: Action) -> Outcome:
        user = action.user
        throttled = 0
        for attempt in range(1, self.CREATE_ATTEMPTS + 1):
            started = datetime.now(UTC)
            try:
                created = self._create_iam.create_access_key(UserName=user)["AccessKey"]
            except Exception as exc:  # noqa: BLE001
                if error_code(exc) == "LimitExceeded":
                    return self._after_limit_exceeded(action)
                if is_throttling(exc) and throttled < self.THROTTLE_RETRIES:
                    throttled += 1  # refused, so not applied: safe to ask again
                    self._sleep(min(0.5 * 2**throttled, 8))
                    continue
                if not is_ambiguous(exc):
                    return Outcome(action, FAILED, describe_error(exc))
                log.warning("key.create_ambiguous", user=user, attempt=attempt, error=describe_error(exc))
                room = self._clear_lost_keys(user, since=started)
                if room is None:
                    return Outcome(action, FAILED, f"{describe_error(exc)}; then the keys could not be listed")
                if not room:
                    return Outcome(action, SKIPPED, CONCURRENT)
                continue
            key = self._new_key(user, created)
            del created
            if key is None:
                return Outcome(action, FAILED, "CreateAccessKey: the answer lacked the key's id, secret or date")
            self._before[user] = self._before.get(user, frozenset()) | {key.key_id}
            return self._verify_and_store(action, key)
        return Outcome(action, FAILED, f"CreateAccessKey: no answer after {self.CREATE_ATTEMPTS} attempts")

    def _new_key(self, user: str, created: object) -> NewKey | None:
        """The new key from CreateAccessKey's answer; None (and the key taken back) if the answer is malformed."""
        fields = created if isinstance(created, dict) else {}
        key_id, secret, when = fields.get("AccessKeyId"), fields.get("SecretAccessKey"), fields.get("CreateDate")
        if isinstance(key_id, str) and isinstance(secret, str) and secret and isinstance(when, datetime):
            return NewKey(user=user, key_id=key_id, created=when, secret=secret)
        if isinstance(key_id, str):
            self._roll_back(NewKey(user=user, key_id=key_id, created=datetime.now(UTC), secret=""))
        return None

    def _clear_lost_keys(self, user: str, *, since: datetime) -> bool | None:
        """After a create whose answer was lost: delete keys that appeared unstored since ``since``.

        Returns whether there is room for a new key (None: the keys could not be listed).
        """
        try:
            keys = inventory.list_access_keys(self._iam, user)
            stored = self._store.stored_key_ids(user)
        except Exception as exc:  # noqa: BLE001
            log.error("key.relist_failed", user=user, error=describe_error(exc))
            return None
        known = self._before.get(user, frozenset()) | stored
        remaining = len(keys)
        for key in keys:
            # Its secret was in the lost answer: it can never be used. (Skew: AWS's clock may lag ours.)
            if key.key_id not in known and key.created >= since - timedelta(seconds=30):
                try:
                    self._iam.delete_access_key(UserName=user, AccessKeyId=key.key_id)
                except Exception as exc:  # noqa: BLE001
                    log.error("key.lost_delete_failed", user=user, key_id=key.key_id, error=describe_error(exc))
                    continue
                log.warning("key.lost_deleted", user=user, key_id=key.key_id, reason="created, but the answer with its secret was lost")
                remaining -= 1
        return remaining < KEYS_PER_BOT

    def _verify_and_store(self, action: Action, key: NewKey) -> Outcome:
        """Keep the secret where readers do not take it yet, prove the key works, then make it first."""
        try:
            self._store.add_pending(key)
        except Exception as exc:  # noqa: BLE001
            return Outcome(action, FAILED, f"store: {describe_error(exc)}{self._roll_back(key)}")
        verification = self._verify(key)
        if not verification.ok:
            log.error(
                "key.unverified",
                user=key.user,
                key_id=key.key_id,
                reason=verification.reason,
                attempts=verification.attempts,
                seconds=round(verification.seconds, 3),
                hint="the key never answered sts:GetCallerIdentity as its user; it is deleted, the old key stays first",
            )
            error = f"unverified: {verification.reason} after {verification.attempts} attempts{self._roll_back(key)}"
            return Outcome(action, FAILED, error, verification=verification)
        log.info("key.verified", user=key.user, key_id=key.key_id, seconds=round(verification.seconds, 3))
        outcome = self._store_new_key(action, key)
        created = key.key_id if outcome.result == DONE else None
        return Outcome(outcome.action, outcome.result, outcome.error, verification=verification, created_key_id=created)

    def _store_new_key(self, action: Action, key: NewKey) -> Outcome:
        try:
            self._store.add(key)
        except Exception as exc:  # noqa: BLE001
            landed = self._still_stored(Action(NAME, DELETE_KEY, action.target, "", user=key.user, key_id=key.key_id))
            if landed:
                log.info("store.write_landed", user=key.user, key_id=key.key_id, after=describe_error(exc))
            elif landed is None:
                # Unknown: rolling back could leave the store naming a deleted key. Leave it:
                # at worst it is an orphan that a later run deletes.
                log.error("key.store_unknown", user=key.user, key_id=key.key_id, error=describe_error(exc))
                return Outcome(action, FAILED, f"store: {describe_error(exc)}; the store could not be read back")
            else:
                return Outcome(action, FAILED, f"store: {describe_error(exc)}{self._roll_back(key)}")
        log.info("key.stored", user=key.user, key_id=key.key_id, store=self._store.name)
        return Outcome(action, DONE)

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
            return Outcome(action, FAILED, f"LimitExceeded, then {describe_error(exc)}")
        if sum(1 for k in keys if k.active) >= KEYS_PER_BOT:
            return Outcome(action, SKIPPED, CONCURRENT)
        if {k.key_id for k in keys} - self._before.get(action.user, frozenset()):
            # A key this run never saw: another runner is working on this user (its plan finishes the job).
            return Outcome(action, SKIPPED, CONCURRENT)
        return Outcome(action, FAILED, f"LimitExceeded with {len(keys)} keys listed")


JOB = BotKeysJob()
