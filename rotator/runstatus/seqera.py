"""Seqera Platform: ``GET {url}/workflow/{id}[?workspaceId=]`` -> ``workflow.status``."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from rotator.runstatus import RunStatus
from rotator.runstatus.http import JsonClient, status_word

FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
ACTIVE = frozenset({"SUBMITTED", "RUNNING"})


class SeqeraSource:
    """Looks a run up in each configured workspace in turn, until one answers.

    Seqera's API documents only 200, 400 and 403 here: a run of another workspace, or one the
    token may not see, answers 403. When every workspace answers 403 (or 404) the run is
    ``not-visible``: not known finished, not an error. 401, 5xx and timeouts are errors.
    """

    name = "seqera"

    def __init__(self, *, url: str, token: str, workspace_ids: Sequence[str] = (), timeout_seconds: float) -> None:
        self._url = url.rstrip("/")
        self._workspace_ids = tuple(workspace_ids) or (None,)  # None: the token's own (personal) workspace
        self._http = JsonClient(timeout_seconds=timeout_seconds, headers={"Authorization": f"Bearer {token}"})

    def __repr__(self) -> str:
        return f"SeqeraSource(url={self._url!r})"

    def lookup(self, run_id: str) -> RunStatus:
        url = f"{self._url}/workflow/{quote(run_id, safe='')}"
        refused = []
        for workspace in self._workspace_ids:
            answer = self._http.get(url, {"workspaceId": workspace} if workspace else None)
            if isinstance(answer, RunStatus):
                return answer
            code, body = answer
            where = f"workspace {workspace}" if workspace else ""
            if code in (403, 404):
                refused.append(f"{code}" + (f" in {where}" if where else ""))
                continue
            if code != 200:
                return RunStatus("error", f"HTTP {code}", where=where)
            return _from_body(body, where)
        return RunStatus("not-visible", "not visible: " + ", ".join(refused))


def _from_body(body: object, where: str) -> RunStatus:
    workflow = body.get("workflow") if isinstance(body, dict) else None
    status = status_word(workflow.get("status")) if isinstance(workflow, dict) else None
    if status in FINAL:
        return RunStatus("finished", status, where=where)
    if status in ACTIVE:
        return RunStatus("active", status, where=where)
    if status == "UNKNOWN":
        return RunStatus("unknown", status, where=where)  # Seqera's UNKNOWN is not final
    return RunStatus("error", f"unexpected status {status}" if status else "unexpected answer", where=where)
