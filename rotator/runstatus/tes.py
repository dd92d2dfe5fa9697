"""GA4GH TES: ``GET {url}/tasks/{id}?view=BASIC`` -> ``state`` (and the last log's ``end_time``); Bearer or Basic auth."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import urllib3

from rotator.runstatus import RunStatus
from rotator.runstatus.http import JsonClient, status_word

FINAL = frozenset({"COMPLETE", "CANCELED"})
RETRYABLE = frozenset({"EXECUTOR_ERROR", "SYSTEM_ERROR"})
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
        # BASIC: the task's logs carry end_time, needed to tell a final error from one about to be retried.
        body = self._http.get_json(f"{self._url}/tasks/{quote(run_id, safe='')}", {"view": "BASIC"})
        if isinstance(body, RunStatus):
            return body
        state = status_word(body.get("state")) if isinstance(body, dict) else None
        if state in RETRYABLE:
            # Funnel can requeue a task from these; TESK recomputes state on every read.
            return RunStatus("finished", state, ended=_last_end_time(body), may_retry=True)
        if state in FINAL:
            return RunStatus("finished", state)
        if state in ACTIVE:
            # PREEMPTED is not final in practice: Funnel and others requeue the task.
            return RunStatus("active", state)
        if state == "UNKNOWN":
            return RunStatus("unknown", state)
        return RunStatus("error", f"unexpected state {state}" if state else "unexpected answer")


def _last_end_time(body: dict) -> datetime | None:
    """``end_time`` of the task's last log (RFC 3339), if any."""
    logs = body.get("logs")
    if not isinstance(logs, list) or not logs or not isinstance(logs[-1], dict):
        return None
    value = logs[-1].get("end_time")
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        ended = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ended if ended.tzinfo else ended.replace(tzinfo=UTC)
