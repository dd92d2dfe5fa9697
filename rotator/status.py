"""``rotator status``: the managed users, their keys, ages, days to expiry and stored state. Read-only.

It reads what the key jobs read, with their code: the managed users (one paginated
GetAccountAuthorizationDetails, the owner tag deciding), ListAccessKeys for each of them,
and, for bot users, which key ids the bot-key store holds (never a secret). There is no plan
and no executor: nothing here can change anything.

"Expired" is the service's rule: ``Inactive``, or ``(now - created).days > lifetime``; a key
thus expires ``lifetime + 1`` days after its creation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from rotator import __version__
from rotator.aws import Aws, SafeError, describe_error
from rotator.concurrency import Progress, ordered_map
from rotator.errors import EXIT_FAILED, EXIT_OK, ConfigError
from rotator.inventory import AccountSnapshot, confirm_keys
from rotator.jobs._keys import key_state
from rotator.keystore import BotKeyStore, make_store
from rotator.model import AccessKey, ManagedUser, Skipped
from rotator.names import OWNER_TAG, owner_tag_value
from rotator.planner import age_days
from rotator.report import GAP, fit, fold, wrap
from rotator.settings import Settings

log = structlog.get_logger("rotator.status")

LIVE, EXPIRED, INACTIVE, NOT_IN_IAM = "live", "expired", "inactive", "not-in-iam"


@dataclass(frozen=True)
class KeyStatus:
    key_id: str
    state: str
    """live, expired, inactive, or not-in-iam (the store names a key IAM does not have)."""
    created: datetime | None = None
    age_days: int | None = None
    days_to_expiry: int | None = None
    """Whole days until the service shows the key as expired; None once it does (or not in IAM)."""
    stored: bool | None = None
    """Bot keys: whether the store holds its secret; None for end users' keys, or when the store could not be read."""
    store_position: int | None = None
    """Bot keys: its place in the store, newest first; 1 is the key the service hands out."""


@dataclass(frozen=True)
class UserStatus:
    name: str
    kind: str
    lifetime_days: int
    keys: tuple[KeyStatus, ...] = ()
    error: str | None = None
    """Why its keys (or, for a bot user, its store entry) could not be read."""

    @property
    def healthy_bot(self) -> bool:
        """A bot user with two live keys, both stored (what bot-keys keeps)."""
        return sum(1 for k in self.keys if k.state == LIVE and k.stored) == 2 and len(self.keys) == 2


@dataclass(frozen=True)
class Status:
    now: datetime
    hostname: str
    account_id: str
    store: str
    lifetimes: dict[str, int]
    users: tuple[UserStatus, ...]
    skipped: tuple[Skipped, ...] = ()
    not_managed: tuple[str, ...] = ()
    """``--user`` names that are no managed user of this hostname."""

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if any(u.error for u in self.users) else EXIT_OK


# --- the rule (pure) -------------------------------------------------------------------------


def key_status(key: AccessKey, *, now: datetime, lifetime_days: int) -> KeyStatus:
    """One IAM key as the service shows it: live, expired or inactive, and its days to expiry."""
    state = key_state(key, now=now, lifetime=lifetime_days)
    left = (key.created + timedelta(days=lifetime_days + 1) - now).days if state == LIVE else None
    return KeyStatus(key_id=key.key_id, state=state, created=key.created, age_days=age_days(key.created, now), days_to_expiry=left)


def bot_key_statuses(
    keys: Sequence[AccessKey], *, stored: Collection[str], served: str | None, now: datetime, lifetime_days: int
) -> tuple[KeyStatus, ...]:
    """A bot user's keys with their place in the store, and store entries IAM does not have.

    Both stores keep a user's keys newest first (by creation) and hand out the first: a stored
    key's position is its rank among the stored keys by creation, unless ``served`` (the store's
    first entry, read only when it names keys IAM lacks) is one of those, which then comes first.
    """
    listed = {k.key_id for k in keys}
    stale = sorted(set(stored) - listed)
    order = [k.key_id for k in sorted(keys, key=lambda k: (k.created, k.key_id), reverse=True) if k.key_id in stored]
    if served in stale:
        order.insert(0, served)
    position = {key_id: n for n, key_id in enumerate(order, start=1)}
    statuses = [
        _with_store(key_status(k, now=now, lifetime_days=lifetime_days), stored=k.key_id in stored,
                    position=position.get(k.key_id))
        for k in keys
    ]
    statuses += [KeyStatus(key_id=key_id, state=NOT_IN_IAM, stored=True, store_position=position.get(key_id)) for key_id in stale]
    return tuple(statuses)


def _with_store(status: KeyStatus, *, stored: bool, position: int | None) -> KeyStatus:
    return replace(status, stored=stored, store_position=position)


# --- reading the account ---------------------------------------------------------------------


def read_status(settings: Settings, aws: Aws, *, account_id: str, now: datetime, users: Collection[str] | None = None) -> Status:
    """Read every managed user's keys (and the bot users' store entries); ``users`` limits it to those IAM names.

    ConfigError: the store cannot be used (exit 2). A user whose keys, or store entry, cannot
    be read is shown with the error, and the others go on.
    """
    workers = settings.aws.concurrency
    store = make_store(settings, aws)
    try:
        account = AccountSnapshot(aws.client("iam"), hostname=settings.hostname, exclude=settings.exclude_users, only=users)
        managed = account.users
        progress = Progress(log, job="status", phase="listing keys", total=len(managed))
        confirmed, failed = confirm_keys(account.iam, managed, workers=workers, progress=progress)
        bots = [u for u in managed if u.kind == "bot" and u.name in confirmed]
        entries, store_errors = _read_store(store, bots, confirmed, workers=workers)
    finally:
        getattr(store, "close", lambda: None)()
    lifetimes = {"user": settings.user_keys.lifetime_days, "bot": settings.bot_keys.lifetime_days}
    shown = []
    for user in managed:
        lifetime = lifetimes[user.kind]
        keys = confirmed.get(user.name)
        if keys is None:
            shown.append(UserStatus(user.name, user.kind, lifetime, error=f"keys could not be listed: {failed[user.name]}"))
        elif user.kind == "bot" and user.name in entries:
            stored, served = entries[user.name]
            statuses = bot_key_statuses(keys, stored=stored, served=served, now=now, lifetime_days=lifetime)
            shown.append(UserStatus(user.name, user.kind, lifetime, statuses))
        else:
            statuses = tuple(key_status(k, now=now, lifetime_days=lifetime) for k in keys)
            error = f"store unreadable: {store_errors[user.name]}" if user.name in store_errors else None
            shown.append(UserStatus(user.name, user.kind, lifetime, statuses, error=error))
    skipped = tuple(s for s in account.skipped if users is None or s.name in users)
    known = {u.name for u in managed} | {s.name for s in skipped}
    return Status(
        now=now, hostname=settings.hostname, account_id=account_id, store=store.name, lifetimes=lifetimes,
        users=tuple(shown), skipped=skipped, not_managed=tuple(sorted(set(users or ()) - known)),
    )


def _read_store(
    store: BotKeyStore, bots: Sequence[ManagedUser], confirmed: dict[str, tuple[AccessKey, ...]], *, workers: int
) -> tuple[dict[str, tuple[frozenset[str], str | None]], dict[str, str]]:
    """(stored key ids, served key id or None) per bot user, and why for those whose entry could not be read."""
    check = getattr(store, "check", None)
    if check is not None and bots:
        try:
            check()  # a missing table or a wrong ENCRYPTION_KEY is a ConfigError: exit 2
        except ConfigError:
            raise
        except SafeError as exc:
            error = describe_error(exc)
            log.error("store.unavailable", store=store.name, error=error)
            return {}, {b.name: error for b in bots}

    def read(bot: ManagedUser) -> tuple[str, frozenset[str] | None, str | None, str | None]:
        try:
            stored = store.stored_key_ids(bot.name)
            listed = {k.key_id for k in confirmed[bot.name]}
            # Only when the store names a key IAM lacks can its first entry differ from the newest stored key.
            served = store.first_key_id(bot.name) if stored - listed else None
            return bot.name, stored, served, None
        except Exception as exc:  # noqa: BLE001 - this bot user alone is shown without its store
            return bot.name, None, None, describe_error(exc)

    entries: dict[str, tuple[frozenset[str], str | None]] = {}
    errors: dict[str, str] = {}
    progress = Progress(log, job="status", phase="reading the store", total=len(bots))
    for name, stored, served, error in ordered_map(read, bots, workers=workers):
        progress.tick()
        if stored is None:
            errors[name] = error or "unreadable"
            log.error("store.read_failed", user=name, error=error)
        else:
            entries[name] = (stored, served)
    return entries, errors


# --- output ----------------------------------------------------------------------------------


def to_document(status: Status) -> dict[str, Any]:
    """The ``--output json`` document: ids, dates and counts; never a secret."""
    return {
        "command": "status",
        "version": __version__,
        "hostname": status.hostname,
        "account": status.account_id,
        "now": status.now.isoformat(),
        "store": status.store,
        "lifetime_days": status.lifetimes,
        "exit_code": status.exit_code,
        "users": [
            {
                "user": u.name,
                "kind": u.kind,
                "error": u.error,
                "keys": [
                    {
                        "key_id": k.key_id,
                        "state": k.state,
                        "created": k.created.isoformat() if k.created else None,
                        "age_days": k.age_days,
                        "days_to_expiry": k.days_to_expiry,
                        "expired": k.state in (EXPIRED, INACTIVE) if k.state != NOT_IN_IAM else None,
                        "stored": k.stored,
                        "store_position": k.store_position,
                    }
                    for k in u.keys
                ],
            }
            for u in status.users
        ],
        "skipped": [{"name": s.name, "reason": s.reason} for s in status.skipped],
        "not_managed": list(status.not_managed),
        "summary": summary_counts(status),
    }


def summary_counts(status: Status) -> dict[str, Any]:
    kinds = Counter(u.kind for u in status.users)
    states = Counter(k.state for u in status.users for k in u.keys)
    bots = [u for u in status.users if u.kind == "bot"]
    return {
        "users": kinds.get("user", 0),
        "bot_users": kinds.get("bot", 0),
        "keys": dict(sorted(states.items())),
        "unhealthy_bot_users": sum(1 for b in bots if not b.healthy_bot),
        "errors": sum(1 for u in status.users if u.error),
    }


KEY_HEADERS = ("KEY ID", "STATE", "AGE", "EXPIRES", "STORED (newest first)")


def render_text(status: Status, *, width: int) -> str:
    """One line per user (name, kind, lifetime), its keys indented below it; fits ``width`` columns."""
    lines = fit([f"rotator status · account {status.account_id}", f"{status.now:%Y-%m-%d %H:%M:%S} UTC",
                 status.hostname, f"bot-key store {status.store}"], width)
    lines.append("")
    rows = [_key_row(k, bot=u.kind == "bot") for u in status.users for k in u.keys]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(KEY_HEADERS)]

    def row(cells: Sequence[str]) -> str:
        return (GAP + GAP.join(c.ljust(w) for c, w in zip(cells, widths, strict=True))).rstrip()

    if status.users:
        lines.append(row(KEY_HEADERS))
    for user in status.users:
        *head, last = fold(user.name, width)
        lines += head + fit([last, _kind_label(user)], width)
        if user.error:
            lines += wrap(f"error: {user.error}", width, indent=GAP)
        if not user.keys and not user.error:
            lines.append(GAP + "(no access keys)")
        lines += [row(_key_row(k, bot=user.kind == "bot")) for k in user.keys]
    if not status.users:
        lines.append(f"no managed users (none tagged {OWNER_TAG}={owner_tag_value(status.hostname)})")
    lines.append("")
    counts = summary_counts(status)
    keys = ", ".join(f"{n} {state}" for state, n in counts["keys"].items()) or "no keys"
    lines += fit([f"{counts['users']} end users, {counts['bot_users']} bot users", f"keys: {keys}",
                  f"bot users without two live, stored keys: {counts['unhealthy_bot_users']}"], width)
    for s in status.skipped:
        lines += wrap(f"skipped {s.name}: {s.reason}", width, indent="")
    for name in status.not_managed:
        lines += wrap(f"not managed: {name} (no such user, or not tagged for {status.hostname})", width, indent="")
    return "\n".join(lines)


def _kind_label(user: UserStatus) -> str:
    kind = "bot user" if user.kind == "bot" else "end user"
    return f"{kind}, key lifetime {user.lifetime_days}d"


def _key_row(key: KeyStatus, *, bot: bool) -> tuple[str, str, str, str, str]:
    age = f"{key.age_days}d" if key.age_days is not None else "-"
    expires = ("in <1d" if key.days_to_expiry == 0 else f"in {key.days_to_expiry}d") if key.state == LIVE else "-"
    if not bot or key.stored is None:
        stored = ""
    elif key.store_position == 1:
        stored = "1 (served)"
    elif key.store_position:
        stored = str(key.store_position)
    else:
        stored = "yes" if key.stored else "no"  # a stored entry IAM lacks, behind the served one: its place is unknown
    state = "stored, not in IAM" if key.state == NOT_IN_IAM else key.state
    return key.key_id, state, age, expires, stored
