"""Bot-key store in AWS Secrets Manager: one secret per bot user.

Secret ``<prefix><iam user name>``; its ``AWSCURRENT`` value is a JSON list of that user's
live keys, newest first (``access_key_id``, ``secret_access_key``, ``created``): a reader
takes the first. Every version this store writes is named ``<uuid hex>.k<number of keys>``,
so that one paginated ListSecrets (which lists each secret's version ids and stages) tells
how many keys each user's current value holds, and so which bot users may need a closer
look, with the count written in the same call as the value it describes. Secrets written
before this index (their description lists the key ids) are counted from the description.

Every write is a compare-and-swap, so concurrent runners never lose each other's entries:
the new value is written as a version staged ``AWSPENDING``, then ``AWSCURRENT`` is moved
to it with ``RemoveFromVersionId=<the version read>``, which Secrets Manager refuses when
another writer moved it first; then the store is read again and the change re-applied.
Values are always read with ``VersionStage=CURRENT_STAGE``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from botocore.exceptions import ClientError

from rotator.aws import SafeError, error_code
from rotator.keystore import KEY_ID, StoreConflict, StoreUnreadable, WouldEmptyStore
from rotator.logs import remember_secret
from rotator.model import NewKey

log = structlog.get_logger("rotator.keystore")

_IDS_MARK = "key ids: "  # the description index of earlier versions, still read
_COUNTED_VERSION = re.compile(r"[0-9a-f]{32}\.k([0-9]{1,2})")
CURRENT_STAGE = "AWSCURRENT"
PENDING_STAGE = "AWSPENDING"
CAS_ATTEMPTS = 8


@dataclass(frozen=True)
class _Current:
    version_id: str
    entries: list[dict]


class SecretsManagerStore:
    name = "secretsmanager"
    permissions = (
        "secretsmanager:ListSecrets",
        "secretsmanager:GetSecretValue",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:TagResource",  # CreateSecret with Tags needs it
    )

    def __init__(self, client, *, prefix: str) -> None:
        self._sm = client
        self.prefix = prefix
        # What this store last read or wrote as each user's AWSCURRENT (this run): a write starts from it
        # instead of reading again. Safe: every write is still a compare-and-swap on the version id.
        self._known: dict[str, _Current] = {}
        # The AWSPENDING version add_pending wrote per user: (key id, version id, based on version id, entries).
        self._pending: dict[str, tuple[str, str, str, list[dict]]] = {}

    def secret_name(self, user_name: str) -> str:
        return self.prefix + user_name

    def index(self) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        paginator = self._sm.get_paginator("list_secrets")
        for page in paginator.paginate(Filters=[{"Key": "name", "Values": [self.prefix]}]):
            for secret in page.get("SecretList", []):
                name = secret.get("Name")
                if not isinstance(name, str) or not name.startswith(self.prefix) or secret.get("DeletedDate"):
                    continue
                counts[name[len(self.prefix):]] = _stored_count(secret)
        return counts

    def stored_key_ids(self, user_name: str) -> frozenset[str]:
        current = self._read(user_name)
        return frozenset(e[KEY_ID] for e in current.entries) if current else frozenset()

    def first_key_id(self, user_name: str) -> str | None:
        """The key a reader takes now, or None."""
        current = self._read(user_name)
        return current.entries[0][KEY_ID] if current and current.entries else None

    def add(self, key: NewKey) -> None:
        pending = self._pending.pop(key.user, None)
        if pending is not None and pending[0] == key.key_id:
            # The pending version already holds exactly this value: make it current, if nobody wrote meanwhile.
            _, version, based_on, entries = pending
            try:
                self._sm.update_secret_version_stage(
                    SecretId=self.secret_name(key.user), VersionStage=CURRENT_STAGE, MoveToVersionId=version,
                    RemoveFromVersionId=based_on,
                )
            except ClientError as exc:
                if error_code(exc) not in ("InvalidParameterException", "InvalidRequestException"):
                    raise
                self._known.pop(key.user, None)  # another writer was first: the full compare-and-swap below
            else:
                self._known[key.user] = _Current(version_id=version, entries=entries)
                return
        new_entry = {KEY_ID: key.key_id, "secret_access_key": key.secret, "created": key.created.isoformat()}
        self._update(key.user, lambda entries: [new_entry] + [e for e in entries if e[KEY_ID] != key.key_id])

    def add_pending(self, key: NewKey) -> None:
        """Keep a new key's secret where readers do not take it yet: a version staged ``AWSPENDING``
        (value: the new key first, then the current entries). ``add`` later makes it current."""
        current = self._known.get(key.user) or self._read(key.user)
        if current is None:
            return  # no secret yet: nothing reads this user's keys, and ``add`` creates it
        entry = {KEY_ID: key.key_id, "secret_access_key": key.secret, "created": key.created.isoformat()}
        entries = _newest_first([entry] + [e for e in current.entries if e[KEY_ID] != key.key_id])
        version = _version_id(entries)
        self._sm.put_secret_value(
            SecretId=self.secret_name(key.user), ClientRequestToken=version, SecretString=json.dumps(entries),
            VersionStages=[PENDING_STAGE],
        )
        self._pending[key.user] = (key.key_id, version, current.version_id, entries)

    def remove(self, user_name: str, key_ids: Collection[str], *, keep_one: bool = False) -> None:
        """Forget these keys; unknown ids are ignored. ``keep_one``: refuse to leave the store empty."""
        ids = set(key_ids)

        def without(entries: list[dict]) -> list[dict]:
            kept = [e for e in entries if e[KEY_ID] not in ids]
            if keep_one and entries and not kept:
                raise WouldEmptyStore(f"{user_name}: forgetting {len(entries)} key(s) would leave the store empty")
            return kept

        self._update(user_name, without, create=False)

    # --- reading and compare-and-swap writing -------------------------------------------

    def _read(self, user_name: str) -> _Current | None:
        try:
            answer = self._sm.get_secret_value(SecretId=self.secret_name(user_name), VersionStage=CURRENT_STAGE)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        value, version = answer.get("SecretString"), answer.get("VersionId")
        if not isinstance(value, str) or not isinstance(version, str):
            raise StoreUnreadable(f"secret {self.secret_name(user_name)} has no string value")
        current = self._known[user_name] = _Current(version_id=version, entries=parse_entries(value, where=self.secret_name(user_name)))
        return current

    def _update(self, user_name: str, change: Callable[[list[dict]], list[dict]], *, create: bool = True) -> None:
        """Apply ``change`` to the current entries and write the result, as a compare-and-swap."""
        name = self.secret_name(user_name)
        for _ in range(CAS_ATTEMPTS):
            known = self._known.pop(user_name, None)
            current = known or self._read(user_name)
            if current is None:
                if not create:
                    return
                entries = _newest_first(change([]))
                try:
                    self._sm.create_secret(
                        Name=name,
                        ClientRequestToken=_version_id(entries),
                        SecretString=json.dumps(entries),
                        Description=_description(user_name),
                        Tags=[{"Key": "managed-by", "Value": "gen3wf-rotator"}, {"Key": "gen3wf-bot-user", "Value": user_name}],
                    )
                except ClientError as exc:
                    if error_code(exc) == "ResourceExistsException":
                        continue  # another runner created it first: read it and apply the change there
                    raise
                return
            entries = _newest_first(change(current.entries))
            if entries == current.entries:
                if known is not None:
                    continue  # "nothing to change" is only decided on a fresh read
                return
            version = _version_id(entries)
            self._sm.put_secret_value(
                SecretId=name, ClientRequestToken=version, SecretString=json.dumps(entries), VersionStages=[PENDING_STAGE]
            )
            try:
                self._sm.update_secret_version_stage(
                    SecretId=name, VersionStage=CURRENT_STAGE, MoveToVersionId=version, RemoveFromVersionId=current.version_id
                )
            except ClientError as exc:
                if error_code(exc) in ("InvalidParameterException", "InvalidRequestException"):
                    log.info("store.write_conflict", user=user_name, hint="another writer was first; re-reading")
                    continue
                raise
            self._known[user_name] = _Current(version_id=version, entries=entries)
            return
        raise StoreConflict(f"{name}: still changing under us after {CAS_ATTEMPTS} attempts")


def parse_entries(value: str, *, where: str) -> list[dict]:
    """The validated entries of a stored value; StoreUnreadable (naming no value) otherwise.

    Each entry needs a key id, a non-empty secret and an ISO creation time, all strings; one
    bad entry makes the whole value unreadable, so the user is left alone, never "repaired".
    """
    try:
        entries = json.loads(value)
    except (ValueError, RecursionError):
        raise StoreUnreadable(f"{where}: the value is not JSON") from None
    if not isinstance(entries, list):
        raise StoreUnreadable(f"{where}: the value is not a list of keys")
    seen = set()
    for n, entry in enumerate(entries):
        problem = _entry_problem(entry)
        if problem is None and entry[KEY_ID] in seen:
            problem = "duplicate access_key_id"
        if problem:
            raise StoreUnreadable(f"{where}: entry {n}: {problem}")
        seen.add(entry[KEY_ID])
        remember_secret(entry["secret_access_key"])
    return entries


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    key_id, secret, created = entry.get(KEY_ID), entry.get("secret_access_key"), entry.get("created")
    if not isinstance(key_id, str) or not (16 <= len(key_id) <= 128) or not key_id.isalnum():
        return "access_key_id missing or not a key id"
    if not isinstance(secret, str) or not secret:
        return "secret_access_key missing or not a string"
    if not isinstance(created, str):
        return "created missing or not a string"
    try:
        datetime.fromisoformat(created)
    except ValueError:
        return "created is not an ISO time"
    return None


def _newest_first(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda e: datetime.fromisoformat(e["created"]).timestamp(), reverse=True)


def _version_id(entries: list[dict]) -> str:
    """A new version's id (ClientRequestToken): unique, and counting the keys its value holds."""
    return f"{uuid.uuid4().hex}.k{len(entries)}"


def _stored_count(secret: Mapping) -> int:
    """How many keys a ListSecrets entry's AWSCURRENT value holds: from its version id, else
    (a secret last written before the version-id index) from the key ids in its description."""
    versions = secret.get("SecretVersionsToStages")
    if isinstance(versions, Mapping):
        for version, stages in versions.items():
            if isinstance(stages, list) and CURRENT_STAGE in stages and isinstance(version, str):
                if counted := _COUNTED_VERSION.fullmatch(version):
                    return int(counted.group(1))
    description = secret.get("Description")
    return len(_ids_from_description(description if isinstance(description, str) else ""))


def _description(user_name: str) -> str:
    return f"Gen3Workflow bot keys of {user_name}, managed by gen3wf-rotator: a JSON list, newest first"


def _ids_from_description(description: str) -> list[str]:
    _, mark, ids = description.partition(_IDS_MARK)
    return [i for i in ids.split(",") if i] if mark else []


__all__ = ["SafeError", "SecretsManagerStore", "parse_entries"]
