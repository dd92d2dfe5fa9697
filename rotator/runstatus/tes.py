"""GA4GH TES: ``GET {url}/tasks/{id}?view=MINIMAL`` -> ``state``; Bearer or Basic auth."""

from __future__ import annotations

from urllib.parse import quote

import urllib3

from rotator.runstatus import RunStatus
from rotator.runstatus.http import JsonClient, status_word

FINAL = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"})
ACTIVE = frozenset({"QUEUED", "INITIALIZING", "RUNNING", "PAUSED", "CANCELING", "PREEMPTED"})


class TesSource:
    name = "tes"

    def __init__(
        self,
        *,
        url: str,
        token: str | None,
        username: str | None,
        password: str | None,
        timeout_seconds: float,
    ) -> None:
        self._url = url.rstrip("/")
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif username:
            headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._http = JsonClient(timeout_seconds=timeout_seconds, headers=headers)

    def __repr__(self) -> str:
        return f"TesSource(url={self._url!r})"

    def lookup(self, run_id: str) -> RunStatus:
        body = self._http.get_json(f"{self._url}/tasks/{quote(run_id, safe='')}", {"view": "MINIMAL"})
        if isinstance(body, RunStatus):
            return body
        state = status_word(body.get("state")) if isinstance(body, dict) else None
        if state in FINAL:
            return RunStatus("finished", state)
        if state in ACTIVE:
            # PREEMPTED is not final in practice: Funnel and others requeue the task.
            return RunStatus("active", state)
        if state == "UNKNOWN":
            return RunStatus("unknown", state)
        return RunStatus("error", f"unexpected state {state}" if state else "unexpected answer")
