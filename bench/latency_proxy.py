"""A loopback HTTP proxy in front of moto's server: fixed added latency, calls counted by operation.

Every request waits ``latency`` seconds (as real IAM's round trip would) and is then forwarded to
the upstream (moto) over a persistent connection of the proxy thread that serves it. Calls are
counted by (service, operation): the service from the SigV4 credential scope, the operation
from ``Action=`` (query protocol: IAM, STS) or ``X-Amz-Target`` (JSON protocol: Secrets Manager).

Optionally the proxy plays AWS's throttle: a token bucket of ``throttle_rate`` requests per
second (burst ``throttle_burst``) over the calls of ``throttle_services``; a call arriving when
the bucket is empty is answered HTTP 400 ``Throttling`` (IAM's query-protocol error document),
as IAM answers a caller over its budget, and is never forwarded.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

THROTTLING_BODY = (
    b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
    b"<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
)
_SCOPE = re.compile(r"Credential=[^/,]+/[^/,]+/[^/,]+/([^/,]+)/aws4_request")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade", "te"}


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens, self._updated = burst, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


def classify(headers, body: bytes) -> tuple[str, str]:
    """(service, operation) of a botocore request."""
    scope = _SCOPE.search(headers.get("Authorization", ""))
    service = scope.group(1) if scope else "?"
    target = headers.get("X-Amz-Target")
    if target:
        return service, target.rsplit(".", 1)[-1]
    try:
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", ["?"])[0]
    except Exception:  # noqa: BLE001
        action = "?"
    return service, action


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs when a client opens its pool at once: 1 s stalls


class LatencyProxy:
    """``with LatencyProxy(upstream_url, latency=0.03) as proxy: ... proxy.url ... proxy.snapshot()``"""

    def __init__(self, upstream: str, *, latency: float = 0.030, throttle_rate: float | None = None,
                 throttle_burst: float | None = None, throttle_services: tuple[str, ...] = ("iam",)) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.latency = latency
        self.throttle_services = throttle_services
        self.bucket = TokenBucket(throttle_rate, throttle_burst or throttle_rate) if throttle_rate else None
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.arrivals: list[tuple[float, str]] = []
        self._local = threading.local()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="latency-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.throttled.clear()
            self.arrivals.clear()

    def throttle(self, rate: float | None, burst: float | None = None) -> None:
        """Start (or, with None, stop) throttling ``throttle_services`` above ``rate`` calls/s."""
        self.bucket = TokenBucket(rate, burst or rate) if rate else None

    def snapshot(self) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], float | None, float | None]:
        """Calls and throttled calls by (service, operation), first and last arrival (monotonic)."""
        with self._lock:
            first = self.arrivals[0][0] if self.arrivals else None
            last = self.arrivals[-1][0] if self.arrivals else None
            return Counter(self.calls), Counter(self.throttled), first, last

    def peak_rate(self, service: str, window: float = 1.0) -> int:
        """The most calls of ``service`` that arrived within any ``window`` seconds."""
        with self._lock:
            times = [t for t, s in self.arrivals if s == service]
        peak, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] > window:
                start += 1
            peak = max(peak, end - start + 1)
        return peak

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed meanwhile
            conn = self._upstream()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # and one write per response: no Nagle/delayed-ACK stalls

            def log_message(self, *args) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                op = classify(self.headers, body)
                throttle = proxy.bucket is not None and op[0] in proxy.throttle_services and not proxy.bucket.take()
                with proxy._lock:
                    proxy.calls[op] += 1
                    if throttle:
                        proxy.throttled[op] += 1
                    proxy.arrivals.append((time.monotonic(), op[0]))
                time.sleep(proxy.latency)
                if throttle:
                    status, headers, data = 400, [("Content-Type", "text/xml")], THROTTLING_BODY
                else:
                    forward = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
                    status, headers, data = proxy._forward(self.command, self.path, forward, body)
                reason = self.responses.get(status, ("",))[0]
                head = [f"{self.protocol_version} {status} {reason}"]
                head += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP_BY_HOP]
                head += [f"Content-Length: {len(data)}", "", ""]
                self.wfile.write("\r\n".join(head).encode("latin-1") + data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler
