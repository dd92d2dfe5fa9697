"""Is a workflow run finished? One module per status API; each offers ``lookup(run_id)``.

A source answers one of:
- ``finished``: the API reports a final state: the run's secrets may go;
- ``active``: the run may still be going: its secrets stay;
- ``not-found`` / ``unknown`` / ``not-visible`` (every workspace answered 403 or 404): not
  known finished: secrets go only past the maximum age;
- ``error``: the API failed (timeout, 5xx, 401…): the run's secrets stay, and it is counted.
An outage must never turn into deletions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from rotator.settings import RunSecretsSettings

StatusState = Literal["finished", "active", "not-found", "not-visible", "unknown", "error"]


@dataclass(frozen=True)
class RunStatus:
    state: StatusState
    detail: str
    """What the API said (``SUCCEEDED``, ``HTTP 500``, ``timeout``…): never a token."""
    where: str = ""
    """Which workspace answered (``workspace 42``), when that decided it."""
    ended: datetime | None = None
    """When the task ended, for a final state the platform may still retry (TES error states)."""
    may_retry: bool = False
    """A final state that a platform can leave again (Funnel retries EXECUTOR_ERROR/SYSTEM_ERROR):
    final only once ``ended`` is older than the error grace; without ``ended``, not known finished."""


class RunStatusSource(Protocol):
    name: str

    def lookup(self, run_id: str) -> RunStatus: ...


def make_source(settings: RunSecretsSettings) -> RunStatusSource:
    """The configured source (ConfigError if a token file cannot be read)."""
    if settings.status_source == "seqera":
        from rotator.runstatus.seqera import SeqeraSource

        return SeqeraSource(
            url=settings.seqera.url,
            token=settings.seqera.token_value(),
            workspace_ids=settings.seqera.all_workspace_ids(),
            timeout_seconds=settings.timeout_seconds,
        )
    if settings.status_source == "tes":
        from rotator.runstatus.tes import TesSource

        return TesSource(
            url=settings.tes.url,
            token=settings.tes.token_value(),
            username=settings.tes.username,
            password=settings.tes.password_value(),
            timeout_seconds=settings.timeout_seconds,
        )
    from rotator.runstatus.none import NoSource

    return NoSource()
