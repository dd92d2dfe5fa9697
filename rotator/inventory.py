"""Read-only view of the account: which IAM users are ours, and their keys.

Nothing here changes anything. Users are found with one paginated
GetAccountAuthorizationDetails; key ages for the whole account come from the IAM
credential report, which is only a hint (it can be four hours old): every user it
flags is confirmed with ListAccessKeys before anything is planned for it.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Collection, Iterable
from datetime import datetime

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from rotator.aws import describe_error
from rotator.concurrency import Progress, ordered_map
from rotator.model import AccessKey, ManagedUser, ReportedKey, Skipped
from rotator.names import NAME_PREFIX, OWNER_TAG, AmbiguousName, owner_tag_value, parse_user_name

log = structlog.get_logger("rotator.inventory")

PERMISSIONS = (
    "iam:GetAccountAuthorizationDetails",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListAccessKeys",
)

REPORT_WAIT_SECONDS = 60


class ReportUnavailable(Exception):
    pass


def list_managed_users(
    iam, *, hostname: str, exclude: Collection[str] = ()
) -> tuple[tuple[ManagedUser, ...], tuple[Skipped, ...]]:
    """Users whose name starts with ``gen3wf-`` and whose ``name`` tag is ``gen3wf-<H>``.

    ``exclude``: IAM user names or Gen3 user ids never touched (skipped and counted).
    """
    managed: list[ManagedUser] = []
    skipped: list[Skipped] = []
    for page in iam.get_paginator("get_account_authorization_details").paginate(Filter=["User"]):
        for detail in page.get("UserDetailList", []):
            tags = {t["Key"]: t["Value"] for t in detail.get("Tags", [])}
            found = classify_user(detail["UserName"], tags, hostname=hostname, exclude=exclude)
            if isinstance(found, ManagedUser):
                managed.append(found)
            elif isinstance(found, Skipped):
                skipped.append(found)
    managed.sort(key=lambda u: u.name)
    return tuple(managed), tuple(skipped)


def classify_user(name: str, tags: dict[str, str], *, hostname: str, exclude: Collection[str] = ()) -> ManagedUser | Skipped | None:
    """Ours, ours but malformed, or not ours (None).

    The tag, not the name prefix, makes a user ours; a tagged user whose name does not
    follow the service's rule is skipped and reported, never guessed at.
    """
    tag = owner_tag_value(hostname)
    if not name.startswith(NAME_PREFIX) or tags.get(OWNER_TAG) != tag:
        return None
    try:
        parsed = parse_user_name(name, hostname=hostname)
    except AmbiguousName:
        return Skipped(name=name, reason="ambiguous: the service's rule builds this name for an end user and for a bot user")
    if parsed is None:
        return Skipped(name=name, reason=f"tagged {OWNER_TAG}={tag} but the name does not follow the gen3wf-<host>-<userid> rule")
    if name in exclude or parsed.user_id in exclude:
        return Skipped(name=name, reason="excluded by ROTATOR_EXCLUDE_USERS")
    return ManagedUser(name=name, kind=parsed.kind)


def read_credential_report(iam, *, sleep: Callable[[float], None] = time.sleep) -> dict[str, tuple[ReportedKey, ...]]:
    """Keys of every IAM user from the credential report, or ReportUnavailable."""
    try:
        waited = 0.0
        delay = 0.5
        while iam.generate_credential_report()["State"] != "COMPLETE":
            if waited >= REPORT_WAIT_SECONDS:
                raise ReportUnavailable(f"the credential report was not ready after {REPORT_WAIT_SECONDS}s")
            sleep(delay)
            waited += delay
            delay = min(delay * 2, 8)
        content = iam.get_credential_report()["Content"]
    except (ClientError, BotoCoreError) as exc:
        raise ReportUnavailable(describe_error(exc)) from None
    if isinstance(content, bytes):
        content = content.decode("utf-8")
    return parse_credential_report(content)


def parse_credential_report(content: str) -> dict[str, tuple[ReportedKey, ...]]:
    keys: dict[str, tuple[ReportedKey, ...]] = {}
    for row in csv.DictReader(io.StringIO(content)):
        found = []
        for slot in (1, 2):
            rotated = row.get(f"access_key_{slot}_last_rotated", "N/A")
            if rotated in ("N/A", "", "not_supported", None):
                continue
            found.append(
                ReportedKey(
                    active=row.get(f"access_key_{slot}_active", "").lower() == "true",
                    created=datetime.fromisoformat(rotated.replace("Z", "+00:00")),
                )
            )
        keys[row["user"]] = tuple(found)
    return keys


def list_access_keys(iam, user_name: str) -> tuple[AccessKey, ...]:
    keys = []
    for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name):
        for meta in page.get("AccessKeyMetadata", []):
            keys.append(AccessKey(key_id=meta["AccessKeyId"], active=meta["Status"] == "Active", created=meta["CreateDate"]))
    return tuple(sorted(keys, key=lambda k: (k.created, k.key_id)))


def confirm_keys(
    iam, users: Iterable[ManagedUser], *, workers: int = 1, progress: Progress | None = None
) -> tuple[dict[str, tuple[AccessKey, ...]], dict[str, str]]:
    """ListAccessKeys for each user, ``workers`` at a time: (keys by user, why by user for those
    that could not be listed).

    A user deleted meanwhile simply has no keys; a user whose keys cannot be listed is left
    out (and so left alone), the others go on.
    """

    def confirm(user: ManagedUser) -> tuple[str, tuple[AccessKey, ...] | None, str | None]:
        try:
            return user.name, list_access_keys(iam, user.name), None
        except Exception as exc:  # noqa: BLE001 - one user's failure is that user's alone
            if isinstance(exc, ClientError) and exc.response["Error"]["Code"] == "NoSuchEntity":
                return user.name, (), None
            return user.name, None, describe_error(exc)

    confirmed: dict[str, tuple[AccessKey, ...]] = {}
    failed: dict[str, str] = {}
    for name, keys, error in ordered_map(confirm, users, workers=workers):
        if error is None:
            confirmed[name] = keys
        else:
            failed[name] = error
            log.error("inventory.keys_unreadable", user=name, error=error)
        if progress:
            progress.tick()
    return confirmed, failed


class AccountSnapshot:
    """What one run reads from IAM once and shares between jobs: a per-run cache.

    The managed users (and the skipped ones) and the credential report are read on first
    use; ``report`` is None when the report could not be had, and ``source`` says which
    inventory the key jobs used.
    """

    def __init__(self, iam, *, hostname: str, exclude: Collection[str] = (), only: Collection[str] | None = None) -> None:
        self.iam = iam
        self.hostname = hostname
        self.exclude = frozenset(exclude)
        self.only = frozenset(only) if only is not None else None
        """``--user``: the run is limited to these IAM user names."""
        self._users: tuple[ManagedUser, ...] | None = None
        self._skipped: tuple[Skipped, ...] = ()
        self._report_read = False
        self._report: dict[str, tuple[ReportedKey, ...]] | None = None
        self.source = ""

    def _read_users(self) -> None:
        if self._users is None:
            users, self._skipped = list_managed_users(self.iam, hostname=self.hostname, exclude=self.exclude)
            self._users = users if self.only is None else tuple(u for u in users if u.name in self.only)
            for s in self._skipped:
                log.warning("user.skipped", user=s.name, reason=s.reason)
            log.info("inventory.users", managed=len(self._users), skipped=len(self._skipped))
            if self.only is not None:
                skipped = {s.name for s in self._skipped}
                for name in sorted(self.only - {u.name for u in users} - skipped):
                    log.warning("user.not_managed", user=name, hint="named by --user, but not a user of this hostname that rotator"
                                f" manages (tagged {OWNER_TAG}={owner_tag_value(self.hostname)}, not excluded): left alone")
            if not users and not self._skipped:
                log.warning(
                    "inventory.no_users",
                    tag=f"{OWNER_TAG}={owner_tag_value(self.hostname)}",
                    hint=f"no users tagged {OWNER_TAG}={owner_tag_value(self.hostname)} (is ROTATOR_HOSTNAME right?)",
                )

    @property
    def users(self) -> tuple[ManagedUser, ...]:
        self._read_users()
        return self._users

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        self._read_users()
        return self._skipped

    @property
    def report(self) -> dict[str, tuple[ReportedKey, ...]] | None:
        if not self._report_read:
            self._report_read = True
            try:
                self._report = read_credential_report(self.iam)
                self.source = "credential-report"
            except ReportUnavailable as exc:
                log.warning(
                    "inventory.credential_report_unavailable",
                    error=str(exc),
                    fallback="ListAccessKeys for every managed user",
                )
                self.source = "list-access-keys"
        return self._report
