"""``rotator serve``: the scheduler, and /metrics, /healthz, /readyz over HTTP.

One cron schedule per enabled job (UTC, bounded jitter). Never two runs of one job at
once; missed runs coalesce; a failing job never stops the scheduler. SIGTERM/SIGINT stop
scheduling and give a running job ``shutdown_grace_seconds`` to finish.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from rotator.aws import Aws
from rotator.errors import EXIT_CONFIG, AccountNotAllowed, ConfigError
from rotator.metrics import Metrics
from rotator.runner import Runner, utcnow
from rotator.schedule import cron_trigger
from rotator.settings import Settings

log = structlog.get_logger("rotator.serve")

IDENTITY_RETRY_MAX_SECONDS = 60
CONNECTION_TIMEOUT_SECONDS = 10


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        aws: Aws | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.aws = aws or Aws()
        self.metrics = metrics or Metrics()
        self.metrics.instrument(self.aws)
        self.metrics.dry_run.set(1 if settings.dry_run else 0)
        self.runner = Runner(settings, aws=self.aws, clock=clock)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self._job_locks = {job: threading.Lock() for job in settings.schedule.expressions()}
        self._active = 0
        self._active_changed = threading.Condition()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        self._http: ThreadingHTTPServer | None = None

    # --- jobs -----------------------------------------------------------------------

    def schedule_jobs(self) -> None:
        jitter = self.settings.schedule.jitter_seconds
        for job, expression in self.settings.schedule.expressions().items():
            self.scheduler.add_job(
                self.run_job, cron_trigger(expression, jitter_seconds=jitter), args=[job], id=job, name=job, replace_existing=True
            )
            log.info("schedule.added", job=job, crontab=expression, jitter_seconds=jitter)

    def run_job(self, job: str) -> None:
        """One run of one job; never raises, never overlaps itself."""
        lock = self._job_locks[job]
        if not lock.acquire(blocking=False):
            log.warning("job.skipped", job=job, reason="the previous run is still going")
            return
        with self._active_changed:
            self._active += 1
        try:
            result = self.runner.run([job], dry_run=self.settings.dry_run)
            self.metrics.record_run(result, settings=self.settings)
            from rotator.cli import notify

            notify(result, self.settings)
        except ConfigError as exc:
            log.error("job.error", job=job, error=str(exc))
            self.metrics.record_error(job, now=self.runner.clock())
        except Exception as exc:  # a failing job never stops the scheduler
            log.exception("job.crashed", job=job, error=f"{type(exc).__name__}: {exc}")
            self.metrics.record_error(job, now=self.runner.clock())
        finally:
            lock.release()
            with self._active_changed:
                self._active -= 1
                self._active_changed.notify_all()

    def wait_for_jobs(self, timeout: float) -> bool:
        with self._active_changed:
            return self._active_changed.wait_for(lambda: self._active == 0, timeout=timeout)

    # --- readiness --------------------------------------------------------------------

    def establish_identity(self) -> None:
        """Check the AWS identity, retrying while AWS cannot be reached; AccountNotAllowed is final."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                account_id = self.runner.check_identity()
            except AccountNotAllowed:
                raise
            except ConfigError as exc:
                log.warning("serve.identity_unavailable", error=str(exc), retry_in_seconds=delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, IDENTITY_RETRY_MAX_SECONDS)
                continue
            self.ready.set()
            log.info("serve.ready", account=account_id)
            return

    # --- HTTP -------------------------------------------------------------------------

    def start_http(self, port: int | None = None, host: str | None = None) -> int:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def version_string(self) -> str:  # no Python version in the Server header
                return "rotator"
            timeout = CONNECTION_TIMEOUT_SECONDS  # an idle or slow client cannot hold a thread

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._send(200, generate_latest(service.metrics.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = service.scheduler.running
                    self._send(200 if ok else 503, b"ok\n" if ok else b"scheduler not running\n")
                elif path == "/readyz":
                    ok = service.ready.is_set()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready: AWS identity not checked yet\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not events
                pass

        host = self.settings.metrics.bind_address if host is None else host
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._http = server_class((host, self.settings.metrics.port if port is None else port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True).start()
        bound = self._http.server_address[1]
        log.info("serve.http_listening", port=bound, paths=["/metrics", "/healthz", "/readyz"])
        return bound

    # --- the whole thing --------------------------------------------------------------

    def serve(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: self._on_signal(signum))
        # The scheduler runs (and /healthz answers 200) from the start: a pod waiting for
        # AWS is alive, just not ready. Jobs are added once the identity check passed.
        self.scheduler.start()
        try:
            self.start_http()
        except OSError as exc:  # a busy port, an address not on this host
            address = f"{self.settings.metrics.bind_address}:{self.settings.metrics.port}"
            print(f"rotator: cannot listen on {address} (ROTATOR_METRICS__PORT / __BIND_ADDRESS): {exc.strerror or exc}", file=sys.stderr)
            self.scheduler.shutdown(wait=False)
            return EXIT_CONFIG
        try:
            self.establish_identity()
        except AccountNotAllowed as exc:
            print(f"rotator: {exc}", file=sys.stderr)  # one line, once: as the command line says any configuration error
            self.scheduler.shutdown(wait=False)
            self._stop_http()
            return EXIT_CONFIG
        if self.stopping.is_set():
            return self.shutdown()
        self.schedule_jobs()
        log.info("serve.started", jobs=sorted(self.settings.schedule.expressions()), dry_run=self.settings.dry_run)
        if self.settings.schedule.run_on_start:
            for job in self.settings.schedule.expressions():
                self.scheduler.add_job(self.run_job, args=[job], id=f"{job}-on-start", name=f"{job} (on start)")
        while not self.stopping.wait(1.0):
            pass
        return self.shutdown()

    def _on_signal(self, signum: int) -> None:
        log.info("serve.stopping", signal=signal.Signals(signum).name)
        self.stopping.set()

    def shutdown(self) -> int:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # no new runs; a running one goes on
        grace = self.settings.schedule.shutdown_grace_seconds
        started = time.monotonic()
        finished = self.wait_for_jobs(grace)
        self._stop_http()
        if not finished:
            log.error("serve.shutdown_timeout", grace_seconds=grace, hint="a job was still running; it was cut off")
            return 1
        log.info("serve.stopped", waited_seconds=round(time.monotonic() - started, 3))
        return 0

    def _stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
