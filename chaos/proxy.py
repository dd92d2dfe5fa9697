"""A fault-injecting loopback HTTP proxy in front of an in-process moto server.

``AWS_ENDPOINT_URL`` of the rotator under test points at the proxy; the proxy forwards
to a moto ``ThreadedMotoServer`` running in this same process. From a seeded
``random.Random`` it decides, per request, to

* answer with a throttling error (IAM/STS: HTTP 400 XML ``Throttling``; Secrets
  Manager, JSON protocol: HTTP 400 ``ThrottlingException``) without forwarding,
* answer 500 or 503 without forwarding,
* reset the connection before forwarding (the server never sees the request),
* forward, let the server apply the request, then reset the connection without
  answering (the client cannot know the request was applied),

and can add latency to every call and SIGKILL a given process after the k-th
forwarded request. Requests are applied one at a time under one lock, and after
each forwarded request a checker is called with the lock held: it sees the emulator's
state exactly as that request left it.

Only loopback: the proxy binds 127.0.0.1 and forwards to a 127.0.0.1 upstream.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import signal
import socket
import struct
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"

# Fault kinds, in the order they are reported.
THROTTLE = "throttle"
HTTP_500 = "http-500"
HTTP_503 = "http-503"
RESET_BEFORE = "reset-before"
RESET_AFTER = "reset-after"
FAULT_KINDS = (THROTTLE, HTTP_500, HTTP_503, RESET_BEFORE, RESET_AFTER)

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date", "proxy-connection"}


@dataclass
class Faults:
    """What the proxy does to the traffic of one phase."""

    rate: float = 0.0
    """Probability that a request gets a fault."""
    seed: int = 0
    weights: dict[str, float] = field(default_factory=lambda: {k: 1.0 for k in FAULT_KINDS})
    latency: float = 0.0
    """Seconds added to every call (before it is forwarded)."""
    kill_after: int | None = None
    """SIGKILL ``kill_pid`` right after the server applied the k-th forwarded request (1-based)."""
    kill_pid: int | None = None


@dataclass
class RequestInfo:
    index: int
    """1-based count of forwarded requests in this phase."""
    service: str
    operation: str
    status: int | None
    fault: str | None
    killed: bool = False
    """The runner was SIGKILLed right after this request was applied."""


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.forwarded = 0
        self.faults: Counter[str] = Counter()
        self.kills = 0
        self.operations: Counter[str] = Counter()
        self.checker_errors: list[str] = []
        self.store_writes = 0
        """Committed writes to the store's table (gen3workflow-db), each judged like a request."""

    def merge(self, other: Stats) -> None:
        self.store_writes += other.store_writes
        self.requests += other.requests
        self.forwarded += other.forwarded
        self.faults.update(other.faults)
        self.kills += other.kills
        self.operations.update(other.operations)
        self.checker_errors += other.checker_errors


def _service_and_operation(headers, body: bytes) -> tuple[str, str]:
    target = headers.get("X-Amz-Target", "")
    if target:
        prefix, _, op = target.partition(".")
        service = "secretsmanager" if prefix.lower() == "secretsmanager" else prefix.lower()
        return service, op or "?"
    service = "?"
    auth = headers.get("Authorization", "")
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            service = scope[3]
    op = "?"
    try:
        values = parse_qs(body.decode("utf-8"), keep_blank_values=True).get("Action")
        if values:
            op = values[0]
    except UnicodeDecodeError:
        pass
    return service, op


def error_response(service: str, kind: str) -> tuple[int, dict[str, str], bytes]:
    """The body AWS would send for an injected throttle, 500 or 503."""
    request_id = str(uuid.uuid4())
    if service == "secretsmanager":
        code, status, message = {
            THROTTLE: ("ThrottlingException", 400, "Rate exceeded"),
            HTTP_500: ("InternalServiceError", 500, "An internal error occurred (injected)"),
            HTTP_503: ("ServiceUnavailable", 503, "Service unavailable (injected)"),
        }[kind]
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id}, body
    err_type, code, status, message = {
        THROTTLE: ("Sender", "Throttling", 400, "Rate exceeded"),
        HTTP_500: ("Receiver", "ServiceFailure", 500, "An internal error occurred (injected)"),
        HTTP_503: ("Receiver", "ServiceUnavailable", 503, "Service unavailable (injected)"),
    }[kind]
    body = (
        "<ErrorResponse><Error>"
        f"<Type>{err_type}</Type><Code>{code}</Code><Message>{message}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body


class ChaosProxy:
    """The proxy plus the moto server it fronts; one per process is enough."""

    def __init__(self) -> None:
        self._moto = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.upstream: tuple[str, int] | None = None
        self.state_lock = threading.RLock()
        self._rng_lock = threading.Lock()
        self._faults = Faults()
        self._rng = random.Random(0)
        self.stats = Stats()
        self.checker: Callable[[RequestInfo], None] | None = None
        self._inflight = 0
        self._idle = threading.Condition()

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        self.upstream = self._moto.get_host_and_port()

        proxy = self

        class Handler(_Handler):
            chaos = proxy

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 64
        self._thread = threading.Thread(target=self._server.serve_forever, name="chaos-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._moto:
            self._moto.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def moto_url(self) -> str:
        assert self.upstream is not None
        return f"http://{self.upstream[0]}:{self.upstream[1]}"

    # --- phases -------------------------------------------------------------------

    def phase(self, faults: Faults | None = None, checker: Callable[[RequestInfo], None] | None = None) -> Stats:
        """Start a new phase: new fault settings, fresh counters (returned)."""
        with self.state_lock, self._rng_lock:
            self._faults = faults or Faults()
            self._rng = random.Random(self._faults.seed)
            self.stats = Stats()
            self.checker = checker
            return self.stats

    def reset_backend(self, seed: int) -> None:
        """Empty every moto backend and seed moto's own RNG (key ids, secrets)."""
        from moto.moto_api._internal import mock_random

        with self.state_lock:
            conn = http.client.HTTPConnection(*self.upstream, timeout=30)
            try:
                conn.request("POST", "/moto-api/reset")
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"moto reset failed: HTTP {resp.status}")
            finally:
                conn.close()
            mock_random.seed(seed)

    def quiesce(self, timeout: float = 30.0) -> bool:
        """Wait until no request is being handled (a killed runner's requests may still be queued)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _enter(self) -> None:
        with self._idle:
            self._inflight += 1

    def _leave(self) -> None:
        with self._idle:
            self._inflight -= 1
            if not self._inflight:
                self._idle.notify_all()

    # --- per request --------------------------------------------------------------

    def _decide(self) -> tuple[str | None, float, Faults]:
        with self._rng_lock:
            faults = self._faults
            self.stats.requests += 1
            fault = None
            if faults.rate > 0 and self._rng.random() < faults.rate:
                kinds = [k for k in FAULT_KINDS if faults.weights.get(k, 0) > 0]
                fault = self._rng.choices(kinds, weights=[faults.weights[k] for k in kinds])[0]
                self.stats.faults[fault] += 1
            return fault, faults.latency, faults

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes):
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() in ("connection", "keep-alive", "proxy-connection", "content-length", "transfer-encoding"):
                    continue
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A killed runner's sockets are reset by its kernel: expected, not worth a traceback.
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    chaos: ChaosProxy

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _handle(self) -> None:
        self.chaos._enter()
        try:
            self._handle_one()
        finally:
            self.chaos._leave()

    def _handle_one(self) -> None:
        chaos = self.chaos
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client died mid-request (a killed runner): AWS would never act on half a request.
            self.close_connection = True
            return
        service, operation = _service_and_operation(self.headers, body)
        if self.path.startswith("/moto-api"):
            fault, latency, faults = None, 0.0, chaos._faults
        else:
            fault, latency, faults = chaos._decide()
        if latency:
            time.sleep(latency)
        if fault in (THROTTLE, HTTP_500, HTTP_503):
            status, headers, payload = error_response(service, fault)
            self._answer(status, headers.items(), payload)
            return
        if fault == RESET_BEFORE:
            self._reset()
            return

        killed = False
        with chaos.state_lock:
            try:
                status, _reason, headers, payload = chaos._forward(self.command, self.path, list(self.headers.items()), body)
            except OSError as exc:
                # The emulator itself failed: answer 502 so the client retries; not an injected fault.
                chaos.stats.checker_errors.append(f"upstream error on {service}:{operation}: {exc!r}")
                self._answer(502, [("Content-Type", "text/plain")], b"upstream error")
                return
            chaos.stats.forwarded += 1
            chaos.stats.operations[f"{service}:{operation}"] += 1
            index = chaos.stats.forwarded
            if faults.kill_after is not None and index == faults.kill_after and faults.kill_pid:
                try:
                    os.kill(faults.kill_pid, signal.SIGKILL)
                    chaos.stats.kills += 1
                    killed = True
                except ProcessLookupError:
                    pass
            if chaos.checker is not None:
                try:
                    chaos.checker(
                        RequestInfo(index=index, service=service, operation=operation, status=status, fault=fault, killed=killed)
                    )
                except Exception:  # noqa: BLE001 - a checker bug must be visible, not kill the proxy thread
                    chaos.stats.checker_errors.append(traceback.format_exc())
        if killed or fault == RESET_AFTER:
            self._reset()
            return
        self._answer(status, headers, payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write, and without Nagle: otherwise every answer
        # waits for the client's delayed ACK (40 ms a call).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self, status: int, headers, payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(payload)
        self.flush_headers()  # headers, blank line and body in one write

    def _reset(self) -> None:
        """Close with RST: the client sees 'connection reset by peer', no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
