"""Bounded parallelism under one shared request rate.

IAM's throttles are token buckets shared by the whole account (gen3-workflow's own calls
too), and AWS publishes no rate: so every thread of this process draws from one client-side
token bucket before each HTTP attempt (retries included), and botocore's adaptive retries
stay the feedback loop when AWS still pushes back. Work fans out to a bounded pool and comes
back in submission order, so plans, outcomes, output and logs stay deterministic.
"""

from __future__ import annotations

import contextvars
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TextIO, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class RateLimiter:
    """A token bucket: at most ``rate`` acquisitions per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self.configure(rate, burst=burst)
        self._tokens = self._burst
        self._updated = clock()

    def configure(self, rate: float, *, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = float(rate)
        self._burst = float(burst if burst is not None else max(1.0, rate))

    @property
    def rate(self) -> float:
        return self._rate

    def acquire(self) -> float:
        """Take one token, waiting as long as needed; returns how long it waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1 - 1e-9:  # float arithmetic may leave 0.999…: that is one token
                    self._tokens = max(self._tokens - 1, 0.0)
                    return waited
                delay = max((1 - self._tokens) / self._rate, 1e-6)
            self._sleep(delay)
            waited += delay

    def before_send(self, **_: Any) -> None:
        """botocore ``before-send`` hook: one token per HTTP attempt; never answers the request itself."""
        self.acquire()
        return None


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int) -> Iterator[R]:
    """``map(fn, items)`` on up to ``workers`` threads, results in the items' order.

    Each call runs in a copy of the caller's context, so log fields bound for the run
    (run_id, hostname, account) stay on every event. An exception is raised where its
    item's result would have been yielded.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="rotator") as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
        for future in futures:
            yield future.result()


class Progress:
    """A ``job.progress`` event at most every ``interval`` seconds during a long phase.

    On a terminal (the CLI turns it on with :meth:`show_on` for text output) it also keeps
    one line, ``bot-keys: confirming keys 120/1250 …``, overwritten in place and cleared when
    the phase ends; log lines step around it (:meth:`write_above`).
    """

    DRAW_AFTER_SECONDS: ClassVar[float] = 0.5
    """A phase shorter than this never draws (no flicker on small accounts)."""
    REDRAW_SECONDS: ClassVar[float] = 0.1

    _display: ClassVar[TextIO | None] = None
    _shown: ClassVar[str] = ""
    _screen: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, log, *, job: str, phase: str, total: int, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._job, self._phase, self._total = log, job, phase, total
        self._interval, self._clock = interval, clock
        self._started = self._last = clock()
        self._drawn = float("-inf")
        self.done = 0

    def tick(self, n: int = 1) -> None:
        self.done += n
        now = self._clock()
        if now - self._last >= self._interval and self.done < self._total:
            self._last = now
            self._log.info(
                "job.progress", job=self._job, phase=self._phase, done=self.done, total=self._total,
                elapsed_seconds=round(now - self._started, 1),
            )
        if Progress._display is not None:
            self._draw(now)

    def _draw(self, now: float) -> None:
        with Progress._screen:
            display = Progress._display
            if display is None:
                return
            if self.done >= self._total:
                Progress._erase()
            elif now - self._started >= self.DRAW_AFTER_SECONDS and (
                now - self._drawn >= self.REDRAW_SECONDS or not Progress._shown
            ):
                self._drawn = now
                width = shutil.get_terminal_size((80, 24)).columns
                line = f"{self._job}: {self._phase} {self.done}/{self._total} …"[: max(width - 1, 1)]
                display.write("\r" + line.ljust(len(Progress._shown)))
                display.flush()
                Progress._shown = line

    @classmethod
    def show_on(cls, stream: TextIO | None) -> None:
        """Keep the progress line on ``stream`` (a terminal) from now on; None: no line (and clear it)."""
        with cls._screen:
            cls._erase()
            cls._display = stream

    @classmethod
    def clear(cls) -> None:
        """Take the progress line off the screen (before the results are printed)."""
        with cls._screen:
            cls._erase()

    @classmethod
    def write_above(cls, stream: TextIO, text: str) -> None:
        """Write ``text`` (a whole log line) to ``stream``, the progress line cleared out of its way first."""
        with cls._screen:
            cls._erase()
            stream.write(text)

    @classmethod
    def _erase(cls) -> None:  # the caller holds _screen
        if cls._shown and cls._display is not None:
            cls._display.write("\r" + " " * len(cls._shown) + "\r")
            cls._display.flush()
        cls._shown = ""
