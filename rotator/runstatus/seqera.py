"""Seqera Platform: ``GET {url}/workflow/{id}[?workspaceId=]`` -> ``workflow.status``."""

from __future__ import annotations

from urllib.parse import quote

from rotator.runstatus import RunStatus
from rotator.runstatus.http import JsonClient, status_word

FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
ACTIVE = frozenset({"SUBMITTED", "RUNNING"})


class SeqeraSource:
    name = "seqera"

    def __init__(self, *, url: str, token: str, workspace_id: str | None, timeout_seconds: float) -> None:
        self._url = url.rstrip("/")
        self._workspace_id = workspace_id
        self._http = JsonClient(timeout_seconds=timeout_seconds, headers={"Authorization": f"Bearer {token}"})

    def __repr__(self) -> str:
        return f"SeqeraSource(url={self._url!r})"

    def lookup(self, run_id: str) -> RunStatus:
        fields = {"workspaceId": self._workspace_id} if self._workspace_id else None
        body = self._http.get_json(f"{self._url}/workflow/{quote(run_id, safe='')}", fields)
        if isinstance(body, RunStatus):
            return body
        workflow = body.get("workflow") if isinstance(body, dict) else None
        status = status_word(workflow.get("status")) if isinstance(workflow, dict) else None
        if status in FINAL:
            return RunStatus("finished", status)
        if status in ACTIVE:
            return RunStatus("active", status)
        if status == "UNKNOWN":
            return RunStatus("unknown", status)  # Seqera's UNKNOWN is not final
        return RunStatus("error", f"unexpected status {status}" if status else "unexpected answer")
