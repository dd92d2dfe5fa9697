"""Is a workflow run finished? One module per status API; each offers ``lookup(run_id)``.

A source answers one of:
- ``finished``: the API reports a final state: the run's secrets may go;
- ``active``: the run may still be going: its secrets stay;
- ``not-found`` / ``unknown``: not known finished: secrets go only past the maximum age;
- ``error``: the API failed (timeout, 5xx, 401…): the run's secrets stay, and it is counted.
An outage must never turn into deletions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from rotator.settings import RunSecretsSettings

StatusState = Literal["finished", "active", "not-found", "unknown", "error"]


@dataclass(frozen=True)
class RunStatus:
    state: StatusState
    detail: str
    """What the API said (``SUCCEEDED``, ``HTTP 500``, ``timeout``…): never a token."""


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
            workspace_id=settings.seqera.workspace_id,
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
