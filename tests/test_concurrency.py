"""Bounded parallelism: results in order, the run's log context on every thread, one shared rate."""

import threading
import time

import structlog

from rotator.concurrency import Progress, RateLimiter, ordered_map


def test_ordered_map_keeps_order_and_runs_in_parallel():
    started = []

    def slow(n):
        started.append(threading.current_thread().name)
        time.sleep(0.05 * (5 - n))  # later items finish first
        return n * n

    t0 = time.monotonic()
    assert list(ordered_map(slow, range(5), workers=5)) == [0, 1, 4, 9, 16]
    assert time.monotonic() - t0 < 0.5  # not 0.75 s one after the other
    assert len(set(started)) > 1


def test_ordered_map_carries_the_run_context_to_every_thread():
    with structlog.contextvars.bound_contextvars(run_id="r-42"):
        seen = list(ordered_map(lambda _: structlog.contextvars.get_contextvars().get("run_id"), range(8), workers=4))
    assert seen == ["r-42"] * 8


def test_ordered_map_raises_where_the_failing_item_is():
    def boom(n):
        if n == 2:
            raise ValueError("x")
        return n

    results = []
    try:
        for r in ordered_map(boom, range(4), workers=2):
            results.append(r)
    except ValueError:
        pass
    assert results == [0, 1]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_the_token_bucket_holds_the_rate_across_threads_worth_of_calls():
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)
    for _ in range(220):
        limiter.acquire()
    # a burst of 20, then 20 per second: 200 more take 10 s
    assert 9.9 <= clock.now <= 10.1


def test_the_limiter_is_shared_by_threads():
    limiter = RateLimiter(200, burst=1)
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 >= 39 / 200 * 0.9  # 40 tokens at 200/s, whatever the thread count


def test_progress_is_logged_at_most_every_interval(log_output):
    clock = FakeClock()
    progress = Progress(structlog.get_logger("t"), job="user-keys", phase="confirming keys", total=100, interval=10, clock=clock)
    for _ in range(100):
        clock.now += 0.5
        progress.tick()
    events = [line for line in log_output.getvalue().splitlines() if "job.progress" in line]
    assert 4 <= len(events) <= 5 and '"total": 100' in events[0]
