"""Pure planning: observed state, settings and an explicit ``now`` in; actions out.

No clock reads and no AWS calls here. "Expired" means exactly what Gen3Workflow shows
its users as expired: inactive, or more whole days since creation than the lifetime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from rotator.model import (
    CREATE_KEY,
    DELETE_KEY,
    DELETE_SECRET,
    FORGET_KEY,
    AccessKey,
    Action,
    BotState,
    ManagedUser,
    ReportedKey,
    RunSecret,
    UserKeys,
)
from rotator.runstatus import RunStatus
from rotator.settings import BotKeysSettings, RunSecretsSettings, UserKeysSettings

USER_KEYS = "user-keys"
BOT_KEYS = "bot-keys"
KEYS_PER_BOT = 2  # AWS allows two keys per IAM user; the service wants two live bot keys


def age_days(created: datetime, now: datetime) -> int:
    """Whole days since ``created``, as the service counts them (``timedelta.days``)."""
    return (now - created).days


def expiry_reason(key: AccessKey | ReportedKey, *, now: datetime, lifetime_days: int, inactive_expires: bool = True) -> str | None:
    """Why the service would show this key as expired, or None if it would not."""
    if inactive_expires and not key.active:
        return "inactive"
    days = age_days(key.created, now)
    if days > lifetime_days:
        return f"expired: {days}d > {lifetime_days}d"
    return None


def _key_target(user: ManagedUser, key_id: str) -> str:
    return f"{user.name}/{key_id}"


# --- which users the credential report says may need action -------------------------


def user_may_need_action(reported: Sequence[ReportedKey], *, now: datetime, settings: UserKeysSettings) -> bool:
    return any(
        expiry_reason(k, now=now, lifetime_days=settings.lifetime_days, inactive_expires=settings.delete_inactive)
        for k in reported
    )


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
    return now - newest >= _rotation_age(settings)


# --- user-keys ----------------------------------------------------------------------


def plan_user_keys(states: Iterable[UserKeys], *, now: datetime, settings: UserKeysSettings) -> tuple[Action, ...]:
    actions = []
    for state in sorted(states, key=lambda s: s.user.name):
        for key in sorted(state.keys, key=lambda k: (k.created, k.key_id)):
            reason = expiry_reason(
                key, now=now, lifetime_days=settings.lifetime_days, inactive_expires=settings.delete_inactive
            )
            if reason:
                actions.append(_delete(USER_KEYS, state.user, key, reason))
    return tuple(actions)


# --- bot-keys -----------------------------------------------------------------------


def _rotation_age(settings: BotKeysSettings) -> timedelta:
    return timedelta(days=settings.lifetime_days / 2)


def _fmt_days(days: float) -> str:
    return f"{days:g}d"


def _fmt_age(age: timedelta) -> str:
    if age >= timedelta(days=1):
        return f"{age.days}d"
    if age >= timedelta(hours=1):
        return f"{int(age.total_seconds() // 3600)}h"
    return f"{int(age.total_seconds() // 60)}m"


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
    for key in sorted(state.keys, key=lambda k: (k.created, k.key_id)):
        reason = expiry_reason(key, now=now, lifetime_days=settings.lifetime_days)
        if reason is None and key.key_id not in state.stored_key_ids:
            age = now - key.created
            if age >= grace:
                reason = f"orphan: secret not stored, {_fmt_age(age)} old >= {settings.orphan_grace_minutes}m grace"
        if reason:
            deletions.append(_delete(BOT_KEYS, user, key, reason))
        else:
            kept.append(key)

    if len(kept) == KEYS_PER_BOT:
        older, newest = kept
        newest_age = now - newest.created
        if newest_age >= _rotation_age(settings):
            reason = (
                f"rotation: newest key {_fmt_age(newest_age)} >= {_fmt_days(settings.lifetime_days / 2)}"
                f" (lifetime {settings.lifetime_days}d / 2)"
            )
            deletions.append(_delete(BOT_KEYS, user, older, reason))
            kept.remove(older)

    live_ids = {k.key_id for k in state.keys}
    forgets = [
        Action(
            job=BOT_KEYS,
            kind=FORGET_KEY,
            target=_key_target(user, key_id),
            reason="stored key no longer exists in IAM",
            user=user.name,
            key_id=key_id,
        )
        for key_id in sorted(state.stored_key_ids - live_ids)
    ]

    missing = KEYS_PER_BOT - len(kept)
    creates = [
        Action(
            job=BOT_KEYS,
            kind=CREATE_KEY,
            target=user.name,
            reason=f"{len(kept) + i} of {KEYS_PER_BOT} live keys" if len(kept) + i else "no live key",
            user=user.name,
        )
        for i in range(missing)
    ]
    return tuple(deletions + forgets + creates)


def plan_bot_keys(states: Iterable[BotState], *, now: datetime, settings: BotKeysSettings) -> tuple[Action, ...]:
    actions: list[Action] = []
    for state in sorted(states, key=lambda s: s.user.name):
        actions.extend(plan_bot_user(state, now=now, settings=settings))
    return tuple(actions)


def _delete(job: str, user: ManagedUser, key: AccessKey, reason: str) -> Action:
    return Action(job=job, kind=DELETE_KEY, target=_key_target(user, key.key_id), reason=reason, user=user.name, key_id=key.key_id)


def count_keys(reported: Mapping[str, Sequence[ReportedKey]], users: Iterable[ManagedUser]) -> int:
    return sum(len(reported.get(u.name, ())) for u in users)


# --- run-secrets ----------------------------------------------------------------------

RUN_SECRETS = "run-secrets"


def run_secret_verdict(
    secret: RunSecret, status: RunStatus | None, *, now: datetime, settings: RunSecretsSettings, region: str | None
) -> tuple[str, str | None]:
    """(state, reason to delete or None) for one secret.

    States: malformed, pending-deletion, too-young, replica, active, error, unknown (kept:
    not known finished and not old enough), replicated (would go, but has replicas),
    finished and expired (both deleted).
    """
    if secret.run_id is None:
        return "malformed", None
    if secret.pending_deletion:
        return "pending-deletion", None
    age = now - secret.created
    # ListSecrets is eventually consistent, and a run may still be starting: leave young secrets.
    if age < timedelta(minutes=settings.min_age_minutes):
        return "too-young", None
    if secret.primary_region and secret.primary_region != region:
        return "replica", None
    if status is None or status.state == "error":
        return "error", None
    if status.state == "active":
        return "active", None
    if status.state == "finished":
        state, reason = "finished", f"run {secret.run_id} {status.detail} ({settings.status_source})"
    elif age.days > settings.max_age_days:
        state, reason = "expired", (
            f"run {secret.run_id} not known finished ({status.detail}), secret {age.days}d > {settings.max_age_days}d"
        )
    else:
        return "unknown", None
    if secret.replica_regions and not settings.remove_replicas:
        return "replicated", None
    return state, reason


def run_secret_needs_status(secret: RunSecret, *, now: datetime, settings: RunSecretsSettings, region: str | None) -> bool:
    """Whether the run's status matters for this secret (saves a lookup otherwise)."""
    state, _ = run_secret_verdict(secret, RunStatus("finished", ""), now=now, settings=settings, region=region)
    return state not in ("malformed", "pending-deletion", "too-young", "replica")


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
    for secret in sorted(secrets, key=lambda s: s.name):
        status = statuses.get(secret.run_id) if secret.run_id else None
        state, reason = run_secret_verdict(secret, status, now=now, settings=settings, region=region)
        states[state] = states.get(state, 0) + 1
        if reason:
            actions.append(
                Action(
                    job=RUN_SECRETS,
                    kind=DELETE_SECRET,
                    target=secret.name,
                    reason=reason,
                    run_id=secret.run_id,
                    replica_regions=secret.replica_regions or (),
                )
            )
    return tuple(actions), states
