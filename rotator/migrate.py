"""``rotator migrate-store``: move stored bot keys from one store to another, verified, dry-run by default.

For each bot user the source holds: every stored key (with its secret and creation time) is
added to the target oldest first, so that the newest is the target's first; then the target
is read back, and each key must be there with the same secret, the target's first key being
the source's (or one the target already held). Keys IAM no longer has active are not copied
(when an IAM client is given): the target must never name a dead key first.

Only with ``delete_source`` (and ``apply``), and only for a user whose keys all verified, the
old Secrets Manager secret is scheduled for deletion with the recovery window, by the ARN read,
and only if nobody wrote to it meanwhile. Rows of the gen3workflow-db table are never deleted
here: the service reads them, and without a row it makes a key of its own.

Every user is its own unit: a failure is recorded and the others go on. No secret is ever
part of a result or a log line.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from botocore.exceptions import ClientError

from rotator import inventory
from rotator.aws import describe_error, error_code
from rotator.errors import ConfigError
from rotator.keystore import KEY_ID, BotKeyStore, StoreUnreadable
from rotator.keystore.secretsmanager import SecretsManagerStore, parse_entries
from rotator.model import DONE, DRY_RUN, FAILED, SKIPPED, NewKey

log = structlog.get_logger("rotator.migrate")

COPY_KEY = "copy-key"
DELETE_SOURCE = "delete-source"

# Beyond the stores' own: reading Secrets Manager values, deleting the old secrets, checking keys in IAM.
PERMISSIONS = ("secretsmanager:ListSecrets", "secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret", "iam:ListAccessKeys")


@dataclass(frozen=True)
class MigrationResult:
    action: str
    """``copy-key`` (one key) or ``delete-source`` (one user's old secret)."""
    user: str
    key_id: str | None
    outcome: str
    """done, dry-run, skipped or failed."""
    detail: str = ""


@dataclass(frozen=True)
class _SourceSecret:
    arn: str
    version_id: str


def migrate_store(
    source: BotKeyStore,
    target: BotKeyStore,
    *,
    users: Collection[str] | None,
    apply: bool,
    delete_source: bool,
    recovery_window_days: int = 7,
    iam=None,
) -> list[MigrationResult]:
    """Copy every live stored key of ``users`` (None: every user the source holds) from ``source`` to ``target``.

    ConfigError (nothing done) for a request that cannot be carried out as asked.
    """
    if source is target:
        raise ConfigError("migrate-store: the source and the target are the same store")
    if delete_source and not isinstance(source, SecretsManagerStore):
        raise ConfigError(
            f"migrate-store: --delete-source deletes Secrets Manager secrets; {source.name} rows are left"
            " (the service reads them and would make keys of its own without them)"
        )
    if recovery_window_days != 0 and not 7 <= recovery_window_days <= 30:
        raise ConfigError("migrate-store: the recovery window is 7 to 30 days, or 0 to delete without recovery")
    for store in (source, target):
        check = getattr(store, "check", None)
        if check is not None:
            check()  # a wrong ENCRYPTION_KEY or a missing table: ConfigError before anything is copied
    names = sorted(users) if users is not None else sorted(source.index())
    results: list[MigrationResult] = []
    for user in names:
        try:
            options = {"apply": apply, "delete_source": delete_source, "recovery_window_days": recovery_window_days, "iam": iam}
            results.extend(_migrate_user(source, target, user, **options))
        except Exception as exc:  # noqa: BLE001 - the boundary: this user fails, the others go on
            results.append(MigrationResult(COPY_KEY, user, None, FAILED, describe_error(exc)))
            log.error("store.migrate_failed", user=user, error=describe_error(exc))
    return results


def _migrate_user(source, target, user: str, *, apply: bool, delete_source: bool, recovery_window_days: int, iam):
    if isinstance(source, SecretsManagerStore):
        entries, secret = _read_secretsmanager(source, user)
    else:
        entries, secret = read_entries(source, user), None
    results = [] if entries else [MigrationResult(COPY_KEY, user, None, SKIPPED, f"nothing stored in {source.name}")]
    if iam is not None:
        active = {k.key_id for k in inventory.list_access_keys(iam, user) if k.active}
        for dead in (e for e in entries if e.key_id not in active):
            results.append(MigrationResult(COPY_KEY, user, dead.key_id, SKIPPED, "not an active key in IAM: not copied"))
        entries = [e for e in entries if e.key_id in active]
    before = {k.key_id: k.secret for k in read_entries(target, user)}

    for entry in reversed(entries):  # oldest first: the newest is added last and ends first
        held = before.get(entry.key_id)
        if held is not None and held != entry.secret:
            results.append(MigrationResult(COPY_KEY, user, entry.key_id, FAILED, "the target holds another secret for this key"))
        elif held is not None:
            results.append(MigrationResult(COPY_KEY, user, entry.key_id, DRY_RUN if not apply else DONE, "already in the target"))
        elif not apply:
            results.append(MigrationResult(COPY_KEY, user, entry.key_id, DRY_RUN, f"would copy to {target.name}"))
        else:
            target.add(entry)
            results.append(MigrationResult(COPY_KEY, user, entry.key_id, DONE, f"copied to {target.name}"))
            log.info("store.key_copied", user=user, key_id=entry.key_id, source=source.name, target=target.name)
    if apply:
        results = _verified(target, user, entries, results, held_before=set(before))
    if delete_source and secret is not None and not any(r.outcome == FAILED for r in results):
        results.append(_delete_source(source, user, secret, apply=apply, recovery_window_days=recovery_window_days))
    return results


def _verified(target, user: str, entries: list[NewKey], results: list[MigrationResult], *, held_before: set[str]):
    """Read the target back: each copied key there with its secret, and the right key first."""
    after = {k.key_id: k.secret for k in read_entries(target, user)}
    stored = target.stored_key_ids(user)
    first = target.first_key_id(user)
    wanted = {e.key_id: e.secret for e in entries}
    checked = []
    for result in results:
        if result.outcome == DONE and result.key_id in wanted:
            if result.key_id not in stored or after.get(result.key_id) != wanted[result.key_id]:
                result = MigrationResult(COPY_KEY, user, result.key_id, FAILED, "not read back from the target as written")
            else:
                result = MigrationResult(COPY_KEY, user, result.key_id, DONE, result.detail + ", verified")
        checked.append(result)
    if entries and first != entries[0].key_id and first not in held_before:
        checked.append(
            MigrationResult(COPY_KEY, user, first, FAILED, f"the target's first key is not the source's ({entries[0].key_id})")
        )
    return checked


def _delete_source(source: SecretsManagerStore, user: str, secret: _SourceSecret, *, apply: bool, recovery_window_days: int):
    name = source.secret_name(user)
    window = f"in {recovery_window_days} days" if recovery_window_days else "now, without recovery"
    if not apply:
        return MigrationResult(DELETE_SOURCE, user, None, DRY_RUN, f"would schedule {name} for deletion {window}")
    sm = _client(source)
    try:
        current = sm.get_secret_value(SecretId=secret.arn, VersionStage="AWSCURRENT")
    except ClientError as exc:
        return MigrationResult(DELETE_SOURCE, user, None, FAILED, describe_error(exc))
    if current.get("VersionId") != secret.version_id:
        return MigrationResult(DELETE_SOURCE, user, None, SKIPPED, f"{name} changed during the migration: kept; run again")
    del current
    schedule_secret_deletion(sm, secret.arn, recovery_window_days=recovery_window_days)
    log.info("store.source_deleted", user=user, secret=name, recovery_window_days=recovery_window_days)
    return MigrationResult(DELETE_SOURCE, user, None, DONE, f"{name} scheduled for deletion {window}")


def schedule_secret_deletion(sm, secret_id: str, *, recovery_window_days: int) -> None:
    """DeleteSecret with a recovery window (restorable until then), or at once for 0."""
    if recovery_window_days == 0:
        sm.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    else:
        sm.delete_secret(SecretId=secret_id, RecoveryWindowInDays=recovery_window_days)


# --- reading whole entries (with secrets) ----------------------------------------------------


def read_entries(store: BotKeyStore, user: str) -> list[NewKey]:
    """A user's stored keys with their secrets, newest first (StoreUnreadable for a bad value)."""
    if isinstance(store, SecretsManagerStore):
        return _read_secretsmanager(store, user)[0]
    entries = getattr(store, "entries", None)
    if entries is None:
        raise ConfigError(f"migrate-store: the {store.name} store cannot list its entries")
    return entries(user)


def _client(store: SecretsManagerStore):
    return store._sm  # the store keeps its Secrets Manager client private; migration reads values directly


def _read_secretsmanager(store: SecretsManagerStore, user: str) -> tuple[list[NewKey], _SourceSecret | None]:
    name = store.secret_name(user)
    try:
        answer = _client(store).get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return [], None
        raise
    value, version, arn = answer.get("SecretString"), answer.get("VersionId"), answer.get("ARN")
    del answer
    if not isinstance(value, str) or not isinstance(version, str) or not isinstance(arn, str):
        raise StoreUnreadable(f"secret {name} has no string value")
    entries = []
    for entry in parse_entries(value, where=name):
        created = datetime.fromisoformat(entry["created"])
        created = created if created.tzinfo else created.replace(tzinfo=UTC)
        entries.append(NewKey(user=user, key_id=entry[KEY_ID], created=created, secret=entry["secret_access_key"]))
    entries.sort(key=lambda k: k.created, reverse=True)
    return entries, _SourceSecret(arn=arn, version_id=version)
