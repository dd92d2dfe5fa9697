"""The data the pipeline passes along: observed state in, actions out.

Everything here is immutable. Secrets never live in these types, except ``NewKey``,
which hides its secret from ``repr`` and is never logged or rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from rotator.names import UserKind

if TYPE_CHECKING:
    from rotator.verify import Verification

# Action kinds
DELETE_KEY = "delete-key"
CREATE_KEY = "create-key"
FORGET_KEY = "forget-key"  # drop a key from the bot-key store that IAM no longer has
DELETE_SECRET = "delete-secret"

DELETIONS = frozenset({DELETE_KEY, DELETE_SECRET})

# Outcomes
DRY_RUN = "dry-run"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass(frozen=True)
class ManagedUser:
    name: str
    kind: UserKind


@dataclass(frozen=True)
class Skipped:
    """A name that looks ours but does not parse: a tagged user off the service's naming rule,
    or a secret with a run-secret prefix that matches no pattern. Reported, never guessed at."""

    name: str
    reason: str


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    active: bool
    created: datetime


@dataclass(frozen=True)
class ReportedKey:
    """A key as the IAM credential report shows it: no id, possibly hours old."""

    active: bool
    created: datetime


@dataclass(frozen=True)
class UserKeys:
    """A managed user and its keys as ListAccessKeys confirmed them."""

    user: ManagedUser
    keys: tuple[AccessKey, ...]


@dataclass(frozen=True)
class BotState:
    """A bot user, its confirmed keys, and the key ids its store holds a secret for."""

    user: ManagedUser
    keys: tuple[AccessKey, ...]
    stored_key_ids: frozenset[str]


@dataclass(frozen=True)
class RunSecret:
    """A Secrets Manager secret whose name has a run-secret pattern's prefix. Never its value."""

    name: str
    arn: str
    created: datetime
    run_id: str | None
    """None: the name has the prefix but does not parse."""
    pending_deletion: bool = False
    primary_region: str | None = None
    """Set (to another region) when this secret is a replica."""
    replica_regions: tuple[str, ...] | None = None
    """Regions it is replicated to; None until described."""
    region: str | None = None
    """The region it was listed in."""


@dataclass(frozen=True)
class Action:
    job: str
    kind: str
    target: str
    reason: str
    user: str | None = None
    key_id: str | None = None
    run_id: str | None = None
    replica_regions: tuple[str, ...] = ()
    arn: str | None = None
    """The secret's ARN as listed: a secret deleted and re-created under the same name is another ARN."""
    reason_code: str = ""
    """Stable, for scripts: expired, inactive, orphan, adopt, rotation, missing-key, stale-entry, run-finished, run-expired."""
    age_days: int | None = None
    """Whole days since the key or secret was created, at planning time (None: a key to create)."""

    @property
    def is_deletion(self) -> bool:
        return self.kind in DELETIONS


@dataclass(frozen=True)
class Outcome:
    """What became of one action: ``result`` is done, failed, skipped or dry-run."""

    action: Action
    result: str
    error: str | None = None
    verification: Verification | None = None
    """For a created bot key: how proving it worked went."""
    created_key_id: str | None = None
    """For a created bot key that is now stored: its id (never its secret)."""


@dataclass(frozen=True)
class NewKey:
    """A freshly created access key. The secret is shown by AWS only once."""

    user: str
    key_id: str
    created: datetime
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        from rotator.logs import remember_secret

        remember_secret(self.secret)
