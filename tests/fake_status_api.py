"""A loopback HTTP server speaking the Seqera Platform and GA4GH TES status APIs."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class FakeStatusApi:
    token: str = "s3cr3t-api-token"
    seqera: dict[str, str | int | list] = field(default_factory=dict)
    """run id -> workflow.status, or an HTTP status code to answer with; a list gives answers in turn."""
    tes: dict[str, str | int] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    basic: tuple[str, str] | None = None
    requests: list[tuple[str, dict, dict]] = field(default_factory=list)
    url: str = ""

    def start(self) -> FakeStatusApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                parsed = urlparse(self.path)
                api.requests.append((parsed.path, parse_qs(parsed.query), dict(self.headers)))
                if not api._authorised(self.headers.get("Authorization", "")):
                    return self._send(401, {"message": "Unauthorized"})
                parts = parsed.path.strip("/").split("/")
                if parts[:2] == ["api", "workflow"] and len(parts) == 3:
                    table = api.seqera
                    value = table.get(parts[2])
                    if isinstance(value, dict):  # per workspace: {"<workspaceId>": answer}
                        workspace = (parse_qs(parsed.query).get("workspaceId") or [""])[0]
                        table = {parts[2]: value.get(workspace, 403)}
                    return self._answer(table, parts[2], lambda s: {"workflow": {"id": parts[2], "status": s}})
                if parts[:4] == ["ga4gh", "tes", "v1", "tasks"] and len(parts) == 5:
                    return self._answer(api.tes, parts[4], lambda s: _tes_task(parts[4], s))
                self._send(404, {"message": "no such route"})

            def _answer(self, table, run_id, shape):
                time.sleep(api.delay.get(run_id, 0))
                if run_id not in table:
                    return self._send(404, {"message": "not found"})
                value = table[run_id]
                if isinstance(value, list):
                    value = value.pop(0) if len(value) > 1 else value[0]
                if isinstance(value, int):
                    return self._send(value, {"message": f"error {value}"})
                if isinstance(value, tuple):  # (state, end_time): a TES task with a log
                    return self._send(200, shape(value))
                if isinstance(value, bytes):  # a raw body, for malformed answers
                    return self._send(200, value)
                self._send(200, shape(value))

            def _send(self, code, body):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self

    def _authorised(self, header: str) -> bool:
        import base64

        if self.basic:
            expected = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return header == f"Basic {expected}"
        return header == f"Bearer {self.token}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def seqera_url(self) -> str:
        return self.url + "/api"

    @property
    def tes_url(self) -> str:
        return self.url + "/ga4gh/tes/v1"


def _tes_task(task_id, value):
    if isinstance(value, tuple):
        state, end_time = value
        return {"id": task_id, "state": state, "logs": [{"start_time": "2026-11-20T09:00:00Z", "end_time": end_time}]}
    return {"id": task_id, "state": value}
