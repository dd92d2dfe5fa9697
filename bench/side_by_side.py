"""``make bench``, side by side: rotator against a plain boto3 loop on the same seeded emulator.

One moto server (ThreadedMotoServer, loopback, ephemeral port) behind :mod:`latency_proxy`
(30 ms added to every call, calls counted there by operation: HTTP attempts, retries included).
Each subject starts from the same state: the account is reset and seeded again, straight into
moto's in-process backends (the server shares them), keys aged as if made earlier. Each subject
is a child process (``python -m rotator run ... --apply``, ``bench/plain_loop.py``); its peak RSS
is its own VmHWM, polled from /proc.

(a) 2,000 end users, 2/3 of them with one expired key, 500 healthy bot users, 100 decoys:
    ``rotator run --job user-keys --apply`` against the loop.
(b) 5,000 end users and 1,250 bot users in steady state (1 in 30 of each needing action: an
    expired end-user key, a bot rotation due), bot keys staggered and stored in the Secrets
    Manager store, 100 decoys: ``--job user-keys --job bot-keys``. The loop runs on a 1-in-10
    sample and is extrapolated (one call at a time: its wall time is the sum of its calls).

Rotator runs with ROTATOR_AWS__MAX_REQUESTS_PER_SECOND=1000 (the cap out of the way), and
(b) again at the default polite cap (20/s) through the proxy throttling IAM above 25 calls/s
(a token bucket, burst 25): the throttling check. (a) at 20/s is extrapolated from those. A
smaller (a) at 1000/s through the same throttling proxy is the contrast.

The call floor, from the scenario by the service's rules (not from rotator's code):
    listing pages (GetAccountAuthorizationDetails: moto answers in one; + ListSecrets pages of 100
    when bot-keys runs) + 2 (GenerateCredentialReport, GetCredentialReport) + one ListAccessKeys per
    managed user needing action + one call per key deletion, per key creation and per store write
    (one per stored key forgotten, one per new key stored): the floor of issue #14, which predates
    the verified bot keys of #16 and the conflict-safe store of #10. What those require is added:
    per new key its GetCallerIdentity as the bot user (#16: verified before it is handed out); per
    store write its second step, moving AWSCURRENT to the version just staged AWSPENDING (#16 for
    a new key; for every write the compare-and-swap that keeps concurrent runners from losing
    each other's entries, #10: Secrets Manager's only conditional write); per bot user whose
    entry changes one read of the current value (the version to compare against, and the other
    key's secret the new value must still hold). The targets are judged on that floor; the
    issue's own floor is printed beside it.
After each subject the account is checked: no expired end-user key left, every bot user with two
live staggered keys that the store holds newest first, everything else untouched.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from latency_proxy import LatencyProxy

HOSTNAME = "bench.example.org"
ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
LATENCY = 0.030
FAST_RATE = 1000  # the highest ROTATOR_AWS__MAX_REQUESTS_PER_SECOND allows: no cap in practice
DEFAULT_RATE = 20
THROTTLE_RATE, THROTTLE_BURST = 25.0, 25.0
LIFETIME = 30
ROTATION = timedelta(days=LIFETIME / 2)
IAM_PAGE = None  # moto answers ListUsers / GetAccountAuthorizationDetails in one page (real IAM: 100 by default)
SECRETS_PAGE = 100  # ListSecrets: moto's and AWS's default page
HERE = Path(__file__).resolve().parent

TARGETS = {"floor_ratio": 1.10, "speedup_a": 5.0, "rss_mib": 100.0, "wall_a_seconds": 20.0, "throttled_fraction": 0.01}


# --- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    age: timedelta
    active: bool = True


@dataclass(frozen=True)
class User:
    name: str
    tag: str | None
    keys: tuple[Key, ...]
    kind: str  # "user", "bot" or "decoy"


@dataclass
class Scenario:
    name: str
    title: str
    jobs: tuple[str, ...]
    users: list[User]
    loop_sample_every: int = 1

    def of_kind(self, kind: str) -> list[User]:
        return [u for u in self.users if u.kind == kind]


def _days(d: float) -> timedelta:
    return timedelta(days=d)


def _names():
    from rotator.names import bot_user_name, iam_user_name, owner_tag_value

    return bot_user_name, iam_user_name, owner_tag_value


def decoys(n: int) -> list[User]:
    """Never touched: another hostname's users, our prefix without our tag (or with another), unrelated users."""
    bot_user_name, iam_user_name, owner_tag_value = _names()
    other = "other.example.org"
    out = []
    for k in range(n):
        old = (Key(_days(90)),)
        match k % 10:
            case 0 | 1 | 2 | 3:
                out.append(User(iam_user_name(other, str(70000 + k)), owner_tag_value(other), old, "decoy"))
            case 4 | 5 | 6:
                out.append(User(iam_user_name(HOSTNAME, str(90000 + k)), None, old, "decoy"))
            case 7:
                out.append(User(iam_user_name(HOSTNAME, str(95000 + k)), "gen3wf-someone-else", old, "decoy"))
            case _:
                out.append(User(f"ci-deployer-{k}", None, (Key(_days(400)),), "decoy"))
    return out


def staggered_bots(n: int, *, rotating_every: int | None) -> list[User]:
    """Two stored keys lifetime/2 apart; with ``rotating_every``, every such bot is due for rotation."""
    bot_user_name, _, owner_tag_value = _names()
    tag = owner_tag_value(HOSTNAME)
    out = []
    for j in range(n):
        newest = 15.2 if rotating_every and j % rotating_every == 0 else 0.25 + (j % 29) * 0.5
        out.append(User(bot_user_name(HOSTNAME, str(10000 + j)), tag, (Key(_days(newest + 15)), Key(_days(newest))), "bot"))
    return out


def scenario_a(scale: float = 1.0) -> Scenario:
    """2,000 end users, 2/3 with one expired key (an old one, an old one beside a fresh one, or an inactive one)."""
    _, iam_user_name, owner_tag_value = _names()
    tag = owner_tag_value(HOSTNAME)
    users = []
    for i in range(int(2000 * scale)):
        fresh = Key(_days(1 + i % 28))
        match i % 6:
            case 0 | 3:
                keys = (fresh,)
            case 1 | 4:
                keys = (Key(_days(35 + i % 20)), fresh)
            case 2:
                keys = (Key(_days(40 + i % 30)),)
            case _:
                keys = (Key(_days(3), active=False), fresh)
        users.append(User(iam_user_name(HOSTNAME, str(10000 + i)), tag, keys, "user"))
    users += staggered_bots(int(500 * scale), rotating_every=None)
    users += decoys(int(100 * scale))
    n = int(2000 * scale)
    return Scenario("a", f"(a) {n:,} end users, 2/3 expired", ("user-keys",), users)


def scenario_b(scale: float = 1.0) -> Scenario:
    """Steady state: 5,000 end users and 1,250 bot users, 1 in 30 of each needing action."""
    _, iam_user_name, owner_tag_value = _names()
    tag = owner_tag_value(HOSTNAME)
    users = []
    for i in range(int(5000 * scale)):
        keys = (Key(_days(0.5 + i % 29)),) + ((Key(_days(31.5)),) if i % 30 == 0 else ())
        users.append(User(iam_user_name(HOSTNAME, str(10000 + i)), tag, keys, "user"))
    users += staggered_bots(int(1250 * scale), rotating_every=30)
    users += decoys(int(100 * scale))
    n, m = int(5000 * scale), int(1250 * scale)
    return Scenario("b", f"(b) {n:,} end + {m:,} bot users, steady", ("user-keys", "bot-keys"), users, loop_sample_every=10)


# --- what the scenario needs: the call floor -------------------------------------------------


def expired(key: Key) -> bool:
    return not key.active or key.age.days > LIFETIME


@dataclass
class Needs:
    users: int = 0  # managed users needing action
    deletions: int = 0
    creations: int = 0
    store_writes: int = 0
    store_reads: int = 0  # bot users whose stored entry changes


def needs(user: User) -> Needs:
    """What one managed user needs, by the service's rules (not rotator's code)."""
    doomed = [k for k in user.keys if expired(k)]
    kept = sorted((k for k in user.keys if not expired(k)), key=lambda k: k.age, reverse=True)
    if user.kind == "user":
        return Needs(int(bool(doomed)), len(doomed))
    if len(kept) == 2 and kept[1].age >= ROTATION:
        doomed.append(kept.pop(0))
    creations = 2 - len(kept)
    if not doomed and not creations:
        return Needs()
    # every bot key is stored: forgetting each deleted key is a store write, so is storing each new key
    writes = len(doomed) + creations
    return Needs(1, len(doomed), creations, writes, int(writes > 0))


ISSUE_FLOOR_PARTS = ("listing", "report", "ListAccessKeys", "deletions", "creations", "store writes")


def floor(s: Scenario) -> tuple[int, dict[str, int]]:
    """listing pages + credential report (2) + one ListAccessKeys per user needing action
    + one call per deletion, creation and store write (issue #14's floor: ``ISSUE_FLOOR_PARTS``)
    + one verification per creation, one second step per store write, one store read per bot
    user whose entry changes (what #16 and #10 require)."""
    kinds = [k for k, job in (("user", "user-keys"), ("bot", "bot-keys")) if job in s.jobs]
    total = Needs()
    for u in s.users:
        if u.kind in kinds:
            n = needs(u)
            total.users += n.users
            total.deletions += n.deletions
            total.creations += n.creations
            total.store_writes += n.store_writes
            total.store_reads += n.store_reads
    listing = 1 if IAM_PAGE is None else math.ceil(len(s.users) / IAM_PAGE)
    if "bot-keys" in s.jobs:
        listing += math.ceil(len(s.of_kind("bot")) / SECRETS_PAGE)
    parts = {"listing": listing, "report": 2, "ListAccessKeys": total.users, "deletions": total.deletions,
             "creations": total.creations, "store writes": total.store_writes,
             "verifications": total.creations, "write second steps": total.store_writes, "store reads": total.store_reads}
    return sum(parts.values()), parts


def issue_floor(s: Scenario) -> int:
    """Issue #14's floor as it was written (no verification, one call per store write)."""
    _, parts = floor(s)
    return sum(parts[p] for p in ISSUE_FLOOR_PARTS)


def floor_by_operation(s: Scenario) -> Counter:
    """The floor as calls: the operation each of its calls would be."""
    _, parts = floor(s)
    bots = "bot-keys" in s.jobs
    pages = math.ceil(len(s.of_kind("bot")) / SECRETS_PAGE) if bots else 0
    return Counter({
        ("iam", "GetAccountAuthorizationDetails"): parts["listing"] - pages, ("secretsmanager", "ListSecrets"): pages,
        ("iam", "GenerateCredentialReport"): 1, ("iam", "GetCredentialReport"): 1,
        ("iam", "ListAccessKeys"): parts["ListAccessKeys"], ("iam", "DeleteAccessKey"): parts["deletions"],
        ("iam", "CreateAccessKey"): parts["creations"], ("secretsmanager", "PutSecretValue"): parts["store writes"],
        ("sts", "GetCallerIdentity"): parts["verifications"],
        ("secretsmanager", "UpdateSecretVersionStage"): parts["write second steps"],
        ("secretsmanager", "GetSecretValue"): parts["store reads"],
    })


def loop_calls(s: Scenario, *, bots: bool) -> int:
    """The plain loop's calls on the whole scenario (see plain_loop.py), for the extrapolation."""
    prefix = f"gen3wf-{HOSTNAME.replace('.', '-')}-"
    _, _, owner_tag_value = _names()
    calls = 1  # ListUsers: one page on moto
    for u in s.users:
        if not u.name.startswith(prefix) or (u.name.endswith("-bot") and not bots):
            continue
        calls += 1  # ListAccessKeys
        bot = u.name.endswith("-bot")
        n = needs(User(u.name, u.tag, u.keys, "bot" if bot else "user"))  # what the loop sees in the keys
        if not (n.deletions or n.creations):
            continue
        calls += 1  # ListUserTags
        if u.tag != owner_tag_value(HOSTNAME):
            continue
        calls += n.deletions + (n.creations + 2 if bot else 0)  # + GetSecretValue, PutSecretValue
    return calls


# --- the emulator --------------------------------------------------------------------------


def reset(moto_url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=30).read()


def seed(s: Scenario, *, now: datetime, secret_prefix: str) -> None:
    """Users, aged keys and stored bot keys, straight into moto's backends (in a fixed shuffled order)."""
    from moto.iam.models import iam_backends
    from moto.secretsmanager.models import secretsmanager_backends

    from rotator.keystore.secretsmanager import _description, _version_id  # the store's own format

    iam = iam_backends[ACCOUNT_ID]["global"]
    sm = secretsmanager_backends[ACCOUNT_ID][REGION]
    order = list(s.users)
    random.Random(14).shuffle(order)  # the listing order: the loop's 1-in-K sample is a fair one
    for u in order:
        iam.create_user(REGION, u.name, tags=[{"Key": "name", "Value": u.tag}] if u.tag else [])
        entries = []
        for k in u.keys:
            key = iam.create_access_key(u.name, status="Active" if k.active else "Inactive")
            key.create_date = now - k.age
            entries.append({"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key,
                            "created": key.create_date.isoformat()})
        if u.kind == "bot":
            entries.sort(key=lambda e: e["created"], reverse=True)
            sm.create_secret(secret_prefix + u.name, json.dumps(entries), None, _description(u.name), None, None,
                             _version_id(entries), [], False)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)  # moto stamps new keys with naive UTC


def account_state(*, secret_prefix: str) -> dict[str, tuple[list, list | None]]:
    """{user: ([(key id, active, created)], stored entries or None)} read from the backends."""
    from moto.iam.models import iam_backends
    from moto.secretsmanager.models import secretsmanager_backends

    iam = iam_backends[ACCOUNT_ID]["global"]
    sm = secretsmanager_backends[ACCOUNT_ID][REGION]
    state = {}
    for name, user in iam.users.items():
        keys = [(k.access_key_id, k.status == "Active", _aware(k.create_date)) for k in user.access_keys]
        stored = None
        secret = sm.secrets.get(secret_prefix + name)
        if secret is not None:
            current = [v for v in secret.versions.values() if "AWSCURRENT" in v["version_stages"]]
            stored = json.loads(current[0]["secret_string"]) if len(current) == 1 else ["<not exactly one AWSCURRENT>"]
        state[name] = (keys, stored)
    return state


def check_end_state(s: Scenario, before: dict, after: dict, *, now: datetime, only: set[str] | None = None) -> list[str]:
    """What the run should have left: no expired end-user key, bots with two live stored keys (the
    first one the newest), decoys and users needing nothing untouched."""
    problems = []
    kinds = {"user-keys": "user", "bot-keys": "bot"}
    acting = {kinds[j] for j in s.jobs}

    def age(created) -> timedelta:
        return now - created

    for u in s.users:
        if only is not None and u.name not in only:
            continue
        keys, stored = after[u.name]
        if u.kind not in acting or not needs(u).users:
            if sorted(k[0] for k in keys) != sorted(k[0] for k in before[u.name][0]):
                problems.append(f"{u.name}: touched, though it needed nothing")
            continue
        if any(not active or age(created).days > LIFETIME for _, active, created in keys):
            problems.append(f"{u.name}: an expired key is left")
        if u.kind == "bot":
            live = sorted(keys, key=lambda k: k[2], reverse=True)
            if len(live) != 2 or age(live[0][2]) >= ROTATION:
                problems.append(f"{u.name}: not two staggered keys after the run")
            elif not stored or stored[0].get("access_key_id") != live[0][0] or {e.get("access_key_id") for e in stored} != {
                k[0] for k in live
            }:
                problems.append(f"{u.name}: the store does not hold exactly its live keys, newest first")
    return problems


# --- subjects -------------------------------------------------------------------------------


@dataclass
class Measured:
    subject: str
    wall: float
    calls: Counter = field(default_factory=Counter)
    throttled: Counter = field(default_factory=Counter)
    rss_mib: float | None = None
    exit_code: int = 0
    active: float = 0.0  # first to last call seen at the proxy
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def subject_env(proxy_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROTATOR_")) and "proxy" not in k.lower()}
    env.update(
        AWS_ENDPOINT_URL=proxy_url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION, NO_PROXY="127.0.0.1,localhost",
        ROTATOR_HOSTNAME=HOSTNAME, ROTATOR_LOG__FORMAT="json",
    )
    return env


def _peak_rss_mib(pid: int) -> float | None:
    """VmHWM of the process's own address space. (Not getrusage/wait4: on Linux their ru_maxrss also
    counts the parent's pages the child held between fork and exec, here the whole bench process.)"""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def spawn(cmd: list[str], env: dict[str, str], proxy: LatencyProxy) -> tuple[int, float, float, str, str, Counter, Counter, float]:
    """Run one subject as a child process: exit code, wall seconds, peak RSS (MiB, VmHWM polled every
    10 ms), stdout, stderr, calls, throttled, active seconds (first to last call at the proxy)."""
    proxy.reset()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=HERE.parent)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, _peak_rss_mib(process.pid) or 0.0)
            time.sleep(0.01)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        calls, throttled, first, last = proxy.snapshot()
        return (process.returncode, wall, peak, out.read(), err.read(), calls, throttled,
                (last - first) if first else 0.0)


def run_rotator(s: Scenario, proxy: LatencyProxy, *, rate: float | None, label: str) -> Measured:
    env = subject_env(proxy.url)
    env.update(ROTATOR_SAFETY__MAX_DELETION_FRACTION="1", ROTATOR_SAFETY__MAX_DELETIONS="100000")
    if rate is not None:
        env["ROTATOR_AWS__MAX_REQUESTS_PER_SECOND"] = str(rate)
    cmd = [sys.executable, "-m", "rotator", "run", *[a for j in s.jobs for a in ("--job", j)], "--apply", "--output", "json"]
    code, wall, rss, out, err, calls, throttled, active = spawn(cmd, env, proxy)
    m = Measured(label, wall, calls, throttled, rss, code, active)
    try:
        doc = json.loads(out)
        m.extra["outcomes"] = dict(Counter(f"{a['kind']}:{a['outcome']}" for j in doc["jobs"] for a in j["actions"]))
        m.extra["errors"] = [e for j in doc["jobs"] for e in j["errors"] + ([j["error"]] if j["error"] else [])]
    except (ValueError, KeyError):
        m.extra["errors"] = [f"no JSON document (exit {code}): {err[-2000:]}"]
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    m.extra["progress_events"] = sum(1 for e in events if e.get("event") == "job.progress")
    m.extra["durations"] = {e["job"]: e.get("duration_seconds") for e in events if e.get("event") == "job.finished"}
    return m


def run_loop(s: Scenario, proxy: LatencyProxy, *, label: str) -> Measured:
    cmd = [sys.executable, str(HERE / "plain_loop.py"), "--hostname", HOSTNAME, "--sample-every", str(s.loop_sample_every)]
    if "bot-keys" in s.jobs:
        cmd.append("--bots")
    code, wall, rss, out, err, calls, throttled, active = spawn(cmd, subject_env(proxy.url), proxy)
    m = Measured(label, wall, calls, throttled, rss, code, active)
    try:
        m.extra.update(json.loads(out))
    except ValueError:
        m.extra["errors"] = [f"loop failed (exit {code}): {err[-2000:]}"]
    return m


def extrapolate_loop(sample: Measured, s: Scenario) -> Measured:
    """The whole loop from its 1-in-K sample: same listing, same time per call, the whole scenario's calls."""
    full_calls = loop_calls(s, bots="bot-keys" in s.jobs)
    sample_work_calls = sample.total - 1  # all but ListUsers
    per_call = sample.extra["work_seconds"] / max(sample_work_calls, 1)
    wall = sample.wall - sample.extra["work_seconds"] + per_call * (full_calls - 1)
    m = Measured(sample.subject, wall, Counter(), rss_mib=sample.rss_mib, note="extrapolated")
    m.extra["calls_total"] = full_calls
    m.extra["sample"] = sample
    m.extra["per_call_ms"] = per_call * 1000
    return m


# --- the run --------------------------------------------------------------------------------


def measure_scenario(s: Scenario, moto_url: str, proxy: LatencyProxy, *, secret_prefix: str, log) -> dict[str, Measured]:
    """Rotator at the cap out of the way, then the loop, each from a freshly seeded account."""
    results: dict[str, Measured] = {}
    for key, runner in (("rotator", lambda: run_rotator(s, proxy, rate=FAST_RATE, label=f"rotator @{FAST_RATE}/s")),
                        ("loop", lambda: run_loop(s, proxy, label="plain boto3 loop"))):
        reset(moto_url)
        now = datetime.now(UTC)
        seed(s, now=now, secret_prefix=secret_prefix)
        before = account_state(secret_prefix=secret_prefix)
        m = runner()
        after = account_state(secret_prefix=secret_prefix)
        only = None
        if key == "loop" and s.loop_sample_every > 1:
            prefix = f"gen3wf-{HOSTNAME.replace('.', '-')}-"
            processed = [n for n in before if n.startswith(prefix)][:: s.loop_sample_every]  # the loop's own order
            only = set(processed)
        m.extra["problems"] = list(m.extra.get("errors", [])) + check_end_state(s, before, after, now=datetime.now(UTC), only=only)
        log(f"  {s.name}: {m.subject}: {m.wall:.1f} s, {m.total:,} calls, exit {m.exit_code}"
            + (f", {len(m.extra['problems'])} problem(s), first: {m.extra['problems'][0]}" if m.extra["problems"] else ""))
        results[key] = m
    if s.loop_sample_every > 1:
        results["loop_sample"] = results["loop"]
        results["loop"] = extrapolate_loop(results["loop"], s)
    return results


def measure_throttled(s: Scenario, moto_url: str, proxy: LatencyProxy, *, rate: float | None, secret_prefix: str, log) -> Measured:
    """Rotator (at its default cap when ``rate`` is None) through the proxy throttling IAM above THROTTLE_RATE calls/s."""
    reset(moto_url)
    seed(s, now=datetime.now(UTC), secret_prefix=secret_prefix)
    before = account_state(secret_prefix=secret_prefix)
    proxy.throttle(THROTTLE_RATE, THROTTLE_BURST)
    try:
        label = f"rotator @{DEFAULT_RATE}/s (default)" if rate is None else f"rotator @{rate:g}/s"
        m = run_rotator(s, proxy, rate=rate, label=label)
        m.extra["peak_iam_per_second"] = proxy.peak_rate("iam")
    finally:
        proxy.throttle(None)
    m.extra["problems"] = list(m.extra.get("errors", []))
    m.extra["problems"] += check_end_state(s, before, account_state(secret_prefix=secret_prefix), now=datetime.now(UTC))
    log(f"  {s.name}: {m.subject}, throttling proxy: {m.wall:.1f} s, {m.total:,} calls, {sum(m.throttled.values())} throttled,"
        f" exit {m.exit_code}")
    return m


def extrapolate_default_cap(fast: Measured, polite: Measured) -> Measured:
    """(a) at the default cap: the measured run's time outside AWS calls + its calls at the rate the measured 20/s run achieved."""
    rate = polite.total / polite.active if polite.active else DEFAULT_RATE
    m = Measured(f"rotator @{DEFAULT_RATE}/s (default)", (fast.wall - fast.active) + fast.total / rate, Counter(fast.calls),
                 rss_mib=None, note="extrapolated")
    m.extra["rate"] = rate
    return m


def run(*, quick: bool = False) -> list[str]:
    """The side-by-side benchmark; returns the targets missed."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    secret_prefix = f"gen3wf-rotator/{HOSTNAME}/bot-keys/"
    scale = 0.15 if quick else 1.0
    a, b = scenario_a(scale), scenario_b(scale)
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {line}", flush=True)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    try:
        with LatencyProxy(moto_url, latency=LATENCY) as proxy:
            log(f"moto at {moto_url}, proxy at {proxy.url} (+{LATENCY * 1000:.0f} ms per call)")
            ra = measure_scenario(a, moto_url, proxy, secret_prefix=secret_prefix, log=log)
            rb = measure_scenario(b, moto_url, proxy, secret_prefix=secret_prefix, log=log)
            rb["polite"] = measure_throttled(b, moto_url, proxy, rate=None, secret_prefix=secret_prefix, log=log)
            ra["polite"] = extrapolate_default_cap(ra["rotator"], rb["polite"])
            # The contrast: the same throttling proxy with the client-side cap out of the way (a smaller (a)).
            small = scenario_a(0.15 * scale)
            contrast = measure_throttled(small, moto_url, proxy, rate=FAST_RATE, secret_prefix=secret_prefix, log=log)
            contrast.extra["scenario"] = small
    finally:
        server.stop()
    from report_table import report

    return report([(a, ra), (b, rb)], contrast=contrast, quick=quick)
