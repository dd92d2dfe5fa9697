"""`make bench`: performance and memory targets, measured (not asserted in the test suite).

1. Planning: bot-keys and user-keys plans for 50,000 users each, time and peak memory.
2. AWS calls: a daily run on moto over 400 managed users of which 20 need action, with the
   credential report and with the ListAccessKeys fallback, counted from botocore's hooks.
3. Side by side (bench/side_by_side.py): rotator against a plain boto3 loop on one seeded moto
   server behind a proxy adding 30 ms per call; calls by operation, wall, peak RSS, the call
   floor, and a throttling check. ``--quick``: the same at 15 % scale (a smoke run).
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
os.environ.pop("AWS_ENDPOINT_URL", None)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from rotator.aws import Aws  # noqa: E402
from rotator.jobs.bot_keys import plan_bot_keys  # noqa: E402
from rotator.jobs.user_keys import plan_user_keys  # noqa: E402
from rotator.model import AccessKey, BotState, ManagedUser, UserKeys  # noqa: E402
from rotator.settings import BotKeysSettings, UserKeysSettings  # noqa: E402

NOW = datetime(2026, 11, 22, tzinfo=UTC)
TARGETS = {"plan_seconds": 3.0, "plan_peak_mib": 150.0, "report_calls_max": 70}
failures: list[str] = []


def check(name: str, value: float, limit: float, unit: str) -> None:
    ok = value <= limit
    print(f"  {name:<44} {value:>10.2f} {unit:<6} (target <= {limit:g}) {'ok' if ok else 'MISSED'}")
    if not ok:
        failures.append(name)


def bench_planner(n: int = 50_000) -> None:
    rng = random.Random(7)
    bots, users = [], []
    for i in range(n):
        keys = tuple(
            AccessKey(f"AKIA{i:08d}{k:08d}", rng.random() > 0.05, NOW - timedelta(days=rng.uniform(0, 45)))
            for k in range(rng.choice((0, 1, 2, 2, 2)))
        )
        stored = frozenset(k.key_id for k in keys if rng.random() > 0.02)
        bots.append(BotState(ManagedUser(f"gen3wf-h-{i}-bot", "bot"), keys, stored))
        users.append(UserKeys(ManagedUser(f"gen3wf-h-{i}", "user"), keys))
    started = time.perf_counter()
    bot_actions = plan_bot_keys(bots, now=NOW, settings=BotKeysSettings())
    user_actions = plan_user_keys(users, now=NOW, settings=UserKeysSettings())
    elapsed = time.perf_counter() - started
    # Memory in a second pass: tracemalloc slows Python down several times.
    tracemalloc.start()
    plan_bot_keys(bots, now=NOW, settings=BotKeysSettings())
    plan_user_keys(users, now=NOW, settings=UserKeysSettings())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"planning {n:,} bot users and {n:,} end users: {len(bot_actions):,} + {len(user_actions):,} actions")
    check("plan time", elapsed, TARGETS["plan_seconds"], "s")
    check("plan peak memory (tracemalloc)", peak / 2**20, TARGETS["plan_peak_mib"], "MiB")


def bench_api_calls(n: int = 400, needing: int = 20) -> None:
    from moto.iam.models import iam_backends

    from rotator.keystore.secretsmanager import SecretsManagerStore
    from rotator.metrics import Metrics
    from rotator.model import NewKey
    from rotator.runner import Runner
    from rotator.settings import load_settings

    os.environ["ROTATOR_HOSTNAME"] = "bench.example.org"
    os.environ["ROTATOR_AWS__MAX_REQUESTS_PER_SECOND"] = "1000"  # calls are counted here, not timed: no need to wait
    tag = "gen3wf-bench-example-org"
    results = {}
    for mode in ("credential report", "ListAccessKeys fallback"):
        with mock_aws():
            settings = load_settings()
            aws = Aws(boto3.session.Session(region_name="us-east-1"))
            iam = aws.client("iam")
            store = SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix)
            backend = iam_backends["123456789012"]["global"]
            for i in range(n):
                name = f"gen3wf-bench-example-org-{i}" + ("-bot" if i % 2 else "")
                iam.create_user(UserName=name, Tags=[{"Key": "name", "Value": tag}])
                ages = (40, 3) if i < needing else ((20, 5) if i % 2 else (10,))
                for age in ages:
                    key = iam.create_access_key(UserName=name)["AccessKey"]
                    created = NOW - timedelta(days=age)
                    for k in backend.users[name].access_keys:
                        if k.access_key_id == key["AccessKeyId"]:
                            k.create_date = created
                    if i % 2:
                        store.add(NewKey(name, key["AccessKeyId"], created, key["SecretAccessKey"]))
            if mode != "credential report":
                def deny(**kwargs):
                    from botocore.exceptions import ClientError

                    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "bench"}}, "GenerateCredentialReport")

                iam.meta.events.register("before-call.iam.GenerateCredentialReport", deny)
            metrics = Metrics(CollectorRegistry())
            metrics.instrument(aws)
            started = time.perf_counter()
            result = Runner(settings, aws=aws, clock=lambda: NOW).run(["user-keys", "bot-keys"], dry_run=True)
            elapsed = time.perf_counter() - started
            calls = sum(
                s.value for m in metrics.registry.collect() if m.name == "rotator_aws_api_calls" for s in m.samples
                if s.name.endswith("_total")
            )
            results[mode] = calls
            actions = sum(len(j.plan.actions) for j in result.jobs)
            print(f"{mode}: {n} managed users, {actions} planned actions, {calls:.0f} AWS calls, {elapsed:.2f} s")
    check("AWS calls per daily run with the report", results["credential report"], TARGETS["report_calls_max"], "calls")
    print(f"  the report saves {results['ListAccessKeys fallback'] - results['credential report']:.0f} calls per run at {n} users")


if __name__ == "__main__":
    from rotator import logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller side-by-side run (smoke test)")
    args = parser.parse_args()
    logs.configure(level="warning")
    started = time.perf_counter()
    bench_planner()
    bench_api_calls()
    del os.environ["ROTATOR_AWS__MAX_REQUESTS_PER_SECOND"], os.environ["ROTATOR_HOSTNAME"]
    import side_by_side

    failures += side_by_side.run(quick=args.quick)
    print(f"\nmake bench: {time.perf_counter() - started:.0f} s")
    if failures:
        print(f"missed: {', '.join(failures)}")
        sys.exit(1)
