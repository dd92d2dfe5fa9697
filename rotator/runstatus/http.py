"""The one HTTP helper the status sources share: a urllib3 pool with timeouts and bounded retries."""

from __future__ import annotations

import json
import re
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, TimeoutError

from rotator import __version__
from rotator.runstatus import RunStatus

MAX_BODY_BYTES = 64 * 1024  # a status answer is a few hundred bytes
_STATUS_WORD = re.compile(r"[A-Z_]{1,32}")


class JsonClient:
    def __init__(self, *, timeout_seconds: float, headers: dict[str, str]) -> None:
        self._headers = {"Accept": "application/json", "User-Agent": f"gen3wf-rotator/{__version__}", **headers}
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout_seconds),
            # A status request is a read: retry once on transient server errors, never on 4xx.
            retries=urllib3.Retry(total=1, connect=1, read=0, status=1, backoff_factor=0.2,
                                  status_forcelist=(502, 503, 504), allowed_methods={"GET"}, raise_on_status=False),
            maxsize=8,
        )

    def __repr__(self) -> str:  # the headers carry the token
        return "JsonClient()"

    def get_json(self, url: str, fields: dict[str, str] | None = None) -> Any | RunStatus:
        """The parsed body of a 200 answer; ``not-found`` for 404; ``error`` for anything else."""
        answer = self.get(url, fields)
        if isinstance(answer, RunStatus):
            return answer
        code, body = answer
        if code == 404:
            return RunStatus("not-found", "HTTP 404")
        if code != 200:
            return RunStatus("error", f"HTTP {code}")
        return body

    def get(self, url: str, fields: dict[str, str] | None = None) -> tuple[int, Any] | RunStatus:
        """(HTTP status, parsed JSON or None), or an ``error`` RunStatus when no answer came."""
        try:
            response = self._pool.request("GET", url, fields=fields, headers=self._headers, preload_content=False)
            try:
                data = response.read(MAX_BODY_BYTES + 1)
            finally:
                response.release_conn()
        except HTTPError as exc:
            cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
            if isinstance(cause, TimeoutError):
                return RunStatus("error", "timeout")
            return RunStatus("error", type(cause).__name__)
        if len(data) > MAX_BODY_BYTES:
            return RunStatus("error", f"response larger than {MAX_BODY_BYTES // 1024} KiB")
        body = None
        if data:
            try:
                body = json.loads(data)
            except (ValueError, RecursionError):  # not JSON, or nested deeper than anything a status needs
                body = None
        return response.status, body


def status_word(value: object) -> str | None:
    """A status as the APIs spell them (``RUNNING``), or None: never echo anything else."""
    return value if isinstance(value, str) and _STATUS_WORD.fullmatch(value) else None
