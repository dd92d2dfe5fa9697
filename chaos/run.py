"""Fault-injection suite for rotator: ``python chaos/run.py [--quick]`` (``make chaos``).

Runs rotator exactly as an operator would — subprocesses ``python -m rotator run --apply
--output json`` with environment variables — against a moto server behind a
fault-injecting loopback proxy (chaos/proxy.py), on seeded scenarios (chaos/scenario.py),
and checks invariants (chaos/invariants.py) after every request and every run.

Three sets:

a. fault seeds: a fresh scenario per seed; one ``run --apply`` with faults injected at
   ``--fault-rate`` (throttling, 500, 503, resets before and after the server applied the
   request); then one fault-free run, which must exit 0 and converge.
b. kill points: one scenario; for each k, SIGKILL the runner right after the server
   applied its k-th request; then one fault-free run, which must exit 0 and converge.
c. concurrency seeds: a fresh scenario per seed, four ``run --apply --job bot-keys`` at
   once (fault-free, without and with 50 ms latency per call): each must exit 0 and no
   bot user may be left with an orphan key or short of two stored keys; then one
   fault-free run, which must exit 0 and converge.

``--store gen3workflow-db`` runs the same sets with rotator's ``gen3workflow-db`` store:
one throwaway PostgreSQL for the whole suite (rotator/throwaway_pg.py), a fresh database with
gen3-workflow's ``system_key`` table per scenario, bot keys seeded as Fernet-encrypted rows,
the invariants judged on the table as the service reads it (chaos/stores.py), and set b
also kills the runner in the middle of its table transactions.

Prints a table of figures and every violation (set, seed, user, what); exits 1 on any.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chaos.invariants import Checker, Violation  # noqa: E402
from chaos.proxy import FAULT_KINDS, ChaosProxy, Faults, Stats  # noqa: E402
from chaos.scenario import HOSTNAME, MAX_SCENARIO_AGE, ORPHAN_GRACE, build  # noqa: E402
from chaos.stores import CREATED_TYPES, STORES, StoreUnavailable, make_view  # noqa: E402

RUNNER_TIMEOUT = 120.0
RATE_VARIABLE = "ROTATOR_AWS__MAX_REQUESTS_PER_SECOND"
FAKE_KEY_ID = "AKIACHAOSFAKEKEY0000"
FAKE_SECRET = "chaos-fake-aws-secret-key-never-printed-0000"


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def runner_env(endpoint: str, src: Path) -> dict[str, str]:
    """A clean environment: nothing inherited but PATH; only loopback AWS."""
    env = {
        "PYTHONPATH": str(src),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "NO_PROXY": "*",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "ROTATOR_HOSTNAME": HOSTNAME,
        "ROTATOR_DRY_RUN": "false",
        "ROTATOR_LOG__FORMAT": "json",
        "ROTATOR_USER_KEYS__LIFETIME_DAYS": "30",
        "ROTATOR_BOT_KEYS__LIFETIME_DAYS": "30",
        "ROTATOR_BOT_KEYS__ORPHAN_GRACE_MINUTES": "60",
        "ROTATOR_RUN_SECRETS__STATUS_SOURCE": "none",
        "ROTATOR_RUN_SECRETS__MAX_AGE_DAYS": "30",
        "ROTATOR_RUN_SECRETS__MIN_AGE_MINUTES": "60",
        "ROTATOR_SAFETY__MAX_DELETION_FRACTION": "1",
        "ROTATOR_SAFETY__MAX_DELETIONS": "100000",
    }
    return env


@dataclass
class Figures:
    name: str
    scenarios: int = 0
    runs: int = 0
    stats: Stats = field(default_factory=Stats)
    exit_codes: Counter = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    wall: float = 0.0
    slowest_run: float = 0.0
    durations: list = field(default_factory=list)
    """(seconds, scenario, run label, exit code) of every run."""


@dataclass
class RunResult:
    label: str
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    hung: bool = False
    killed: bool = False


class Suite:
    def __init__(self, args) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="rotator-chaos-"))
        self.kept_dirs: list[Path] = []
        self.proxy = ChaosProxy()
        self.proxy.start()
        self.store = None
        try:
            self.store = make_view(args.store, self.workdir)  # StoreUnavailable: no PostgreSQL (exit 2)
        except BaseException:
            self.proxy.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.src = Path(args.rotator_src).resolve()
        self.env = runner_env(self.proxy.url, self.src)
        self.module = "rotator"
        if args.self_test:  # the suite's own reference implementation, to show the invariants can be met
            self.src, self.module = REPO, "chaos.reference"
            self.env = runner_env(self.proxy.url, REPO)
        self.store_env = self.store.env()
        self.env.update(self.store_env)
        self.scenario_env: dict[str, str] = {}
        self._active_checker: Checker | None = None
        self.store.on_write = self._on_store_write
        for item in args.rotator_env or []:
            name, _, value = item.partition("=")
            self.env[name] = value
        # rotator paces itself (ROTATOR_AWS__MAX_REQUESTS_PER_SECOND, default 20/s): the suite raises
        # that for speed, except for set c's concurrent runners, which keep the shipped default.
        self.fast_env = {RATE_VARIABLE: str(args.rps)} if args.rps and RATE_VARIABLE not in self.env else {}

    def preflight(self) -> str | None:
        """Why rotator cannot be tested at all (it does not start), or None."""
        try:
            p = subprocess.run(
                [python(), "-c", f"import rotator, {self.module}; print(rotator.__file__)"],
                cwd=str(self.src), env=self.env, capture_output=True, text=True, timeout=60,
            )
        except subprocess.TimeoutExpired:
            return "importing rotator took more than 60s"
        if p.returncode != 0:
            return (p.stderr.strip().splitlines() or ["?"])[-1]
        where = p.stdout.strip()
        if not where.startswith(str(self.src)):
            return f"rotator resolves to {where}, not under {self.src}"
        return None

    def close(self) -> None:
        try:
            if self.store is not None:
                self.store.close()
        finally:
            self.proxy.stop()
            shutil.rmtree(self.workdir / "store", ignore_errors=True)  # the database password and Fernet key
            if not self.kept_dirs:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _on_store_write(self, what: str) -> None:
        """A committed write to the store's table: judged like an AWS request, under the same lock."""
        with self.proxy.state_lock:
            checker = self._active_checker
            if checker is None:
                return
            stats = self.proxy.stats
            stats.store_writes += 1
            try:
                checker.after_store_write(what)
            except Exception:  # noqa: BLE001 - a checker bug must be visible
                stats.checker_errors.append(traceback.format_exc())

    def created_type(self, n: int) -> str | None:
        """The ``created_time`` column type of the n-th variant of a scenario (gen3workflow-db only)."""
        if self.store.name != "gen3workflow-db":
            return None
        if self.args.created_type != "both":
            return self.args.created_type
        return CREATED_TYPES[n % 2]

    # --- one scenario ---------------------------------------------------------------

    def scenario(self, fig: Figures, set_name: str, seed: int, variant: str = "", n: int | None = None):
        """A fresh scenario (emulator and store); ``n`` picks the table's created_time type (default: the seed)."""
        self.proxy.phase(None)
        self.proxy.reset_backend(seed)
        created_type = self.created_type(seed if n is None else n)
        self.scenario_env = self.store.begin(f"{set_name}{seed}{variant}", created_type)
        scenario = build(seed, self.proxy.moto_url, scale=self.args.scale, store=self.store)
        self.store.seeded()
        checker = Checker(scenario, set_name=self.set_label(set_name), seed=seed, store=self.store)
        checker.hidden.add(FAKE_SECRET)
        checker.hidden |= self.store.hidden()
        fig.scenarios += 1
        out = self.workdir / f"{set_name}-{seed}{variant}"
        out.mkdir(parents=True, exist_ok=True)
        return scenario, checker, out

    def set_label(self, name: str) -> str:
        """A set's name in violations: with the table store, also its created_time type."""
        created = getattr(self.store, "created_type", None)
        return f"{name} {created}" if created else name

    def finish_scenario(self, fig: Figures, scenario, checker: Checker, out: Path) -> None:
        from datetime import UTC, datetime

        if datetime.now(UTC) - scenario.now > MAX_SCENARIO_AGE:
            checker.violate("suite", "scenario", "took longer than its age margins allow: verdicts may be stale", "end")
        fig.violations += checker.violations
        if checker.violations:
            self.kept_dirs.append(out)
            (out / "violations.txt").write_text("\n".join(v.line() for v in checker.violations) + "\n")
            self.store.end(out)
        else:
            self.store.end(None)
            shutil.rmtree(out, ignore_errors=True)

    def supports(self, env: dict[str, str]) -> bool:
        """Whether rotator accepts these extra settings (an unknown ROTATOR_* name exits 2)."""
        self.proxy.phase(None)
        p = subprocess.run(
            [python(), "-m", self.module, "plan", "--job", "run-secrets", "--output", "json"],
            cwd=str(self.src), env={**self.env, **self.scenario_env, **env}, capture_output=True, text=True, timeout=120,
        )
        return not (p.returncode == 2 and any(name in p.stderr for name in env))

    def start(self, argv: list[str], out: Path, label: str, paced: bool = False):
        stdout = open(out / f"{label}.stdout", "w+")
        stderr = open(out / f"{label}.stderr", "w+")
        proc = subprocess.Popen(
            [python(), "-m", self.module, *argv],
            cwd=str(self.src),
            env={**self.env, **self.scenario_env} if paced else {**self.env, **self.scenario_env, **self.fast_env},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        return proc, stdout, stderr, time.monotonic()

    def wait(self, started, argv, label) -> RunResult:
        proc, stdout, stderr, t0 = started
        hung = False
        remaining = RUNNER_TIMEOUT - (time.monotonic() - t0)
        try:
            proc.wait(timeout=max(remaining, 0.1))
        except subprocess.TimeoutExpired:
            hung = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        seconds = time.monotonic() - t0
        stdout.seek(0)
        stderr.seek(0)
        result = RunResult(label, argv, proc.returncode, stdout.read(), stderr.read(), seconds, hung=hung)
        stdout.close()
        stderr.close()
        return result

    def run_many(
        self, fig: Figures, checker: Checker, out: Path, runs: list[tuple[str, list[str]]], faults: Faults, *, paced: bool = False,
        hold_write: int | None = None,
    ) -> list[RunResult]:
        """Run these at once; ``hold_write``: SIGKILL the (single) runner while its n-th table write's
        transaction is open (gen3workflow-db)."""
        if hold_write is not None:
            self.store.arm_hold(hold_write)
        stats = self.proxy.phase(faults, checker.after_request)
        with self.proxy.state_lock:
            self._active_checker = checker
        checker.phase = runs[0][0] if len(runs) == 1 else f"{len(runs)} concurrent runners"
        started = []
        killer, done, held = None, threading.Event(), []
        for label, argv in runs:
            started.append(self.start(argv, out, label, paced=paced))
            if faults.kill_after is not None:
                faults.kill_pid = started[-1][0].pid
        if hold_write is not None:
            pid = started[0][0].pid
            killer = threading.Thread(target=lambda: held.append(self.store.kill_when_held(pid, done)), daemon=True)
            killer.start()
        results = [self.wait(s, argv, label) for s, (label, argv) in zip(started, runs, strict=True)]
        if killer is not None:
            done.set()
            killer.join(timeout=30)
            self.store.arm_hold(None)
            if held and held[0]:
                stats.kills += 1
        if not self.proxy.quiesce():
            checker.violate("suite", "proxy", "requests still in flight 30s after the runners ended", checker.phase)
        if not self.store.quiesce():
            checker.violate("suite", "store", "runner connections to the database still open 30s after the runners ended", checker.phase)
        with self.proxy.state_lock:
            self._active_checker = None
            try:  # table writes after the last AWS request (and a killed runner's rollback) are judged here
                checker.check_state(when="after the run")
            except Exception:  # noqa: BLE001
                stats.checker_errors.append(traceback.format_exc())
        self.proxy.phase(None)
        fig.stats.merge(stats)
        fig.runs += len(results)
        for r in results:
            fig.slowest_run = max(fig.slowest_run, r.seconds)
            fig.durations.append((round(r.seconds, 1), f"{checker.set_name} seed={checker.seed}", r.label, r.rc))
            r.killed = r.rc == -signal.SIGKILL and not r.hung
            fig.exit_codes[("hung" if r.hung else "killed" if r.killed else r.rc)] += 1
            checker.check_output(r.label, r.stdout, r.stderr)
            if r.hung:
                checker.violate("hang", r.label, f"runner did not finish within {RUNNER_TIMEOUT:.0f}s (killed)", r.label)
        for err in stats.checker_errors:
            checker.violate("suite", "proxy", err.strip().splitlines()[-1], checker.phase, dedup=err)
        return results

    def run_one(self, fig, checker, out, label, argv, faults=None) -> RunResult:
        return self.run_many(fig, checker, out, [(label, argv)], faults or Faults())[0]

    # --- shared judgements ------------------------------------------------------------

    def document(self, checker: Checker, r: RunResult):
        """The run's JSON document, or a violation if it crashed or printed none."""
        crash = _traceback_line(r.stderr, checker.hidden)
        if crash:
            checker.violate("crash", r.label, f"traceback: {crash} (exit {r.rc})", r.label, dedup=crash.split(":")[0])
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            if not crash:
                checker.violate("no-json-output", r.label, f"stdout is not one JSON document (exit {r.rc})", r.label)
            return None
        return doc

    def final(self, fig: Figures, checker: Checker, out: Path, scenario) -> None:
        """One fault-free run that must exit 0 and converge, then a plan that must be empty."""
        r = self.run_one(fig, checker, out, "final", ["run", "--apply", "--output", "json"])
        doc = self.document(checker, r)
        if r.rc != 0 and not r.hung:
            failed = _failed_actions(doc)
            checker.violate("final-run-failed", "final run", f"exit {r.rc}, want 0" + (f"; failed: {failed}" if failed else ""), "final")
        checker.phase = "after final run"
        checker.converged(when="after the final fault-free run")
        p = self.run_one(fig, checker, out, "plan", ["plan", "--output", "json"])
        doc = self.document(checker, p)
        if doc is not None:
            left = [f"{a['kind']} {a['target']} ({a['reason']})" for j in doc.get("jobs", []) for a in j.get("actions", [])]
            if left:
                checker.violate("not-converged", "plan after the final run", f"{len(left)} actions left: " + "; ".join(left[:6]), "plan")

    # --- the sets ---------------------------------------------------------------------

    def set_faults(self) -> Figures:
        fig = Figures("a: fault seeds")
        t0 = time.monotonic()
        for seed in range(self.args.seed_base, self.args.seed_base + self.args.fault_seeds):
            scenario, checker, out = self.scenario(fig, "a", seed)
            faults = Faults(rate=self.args.fault_rate, seed=seed, latency=0.0)
            r = self.run_one(fig, checker, out, "faulted", ["run", "--apply", "--output", "json"], faults)
            checker.false_failures(self.document(checker, r), "faulted")
            if r.rc not in (0, 1, 2) and not r.hung:
                checker.violate("unexpected-exit", "faulted run", f"exit {r.rc} (0, 1, or 2 when AWS could not be reached, expected)", "faulted")
            self.final(fig, checker, out, scenario)
            self.finish_scenario(fig, scenario, checker, out)
            self.progress(fig, seed)
        fig.wall = time.monotonic() - t0
        return fig

    def baseline_requests(self) -> tuple[int, int]:
        """(AWS requests, table writes) of a fault-free run of set b's scenario."""
        fig = Figures("baseline")
        scenario, checker, out = self.scenario(fig, "b", self.args.seed_base, n=0)
        r = self.run_one(fig, checker, out, "baseline", ["run", "--apply", "--output", "json"])
        if r.rc != 0:
            print(f"chaos: baseline run exited {r.rc}", file=sys.stderr)
        writes = self.store.writes() if self.store.has_writes else 0
        self.store.end(None)
        shutil.rmtree(out, ignore_errors=True)
        return fig.stats.forwarded, writes

    def set_kills(self) -> Figures:
        fig = Figures("b: kill points")
        t0 = time.monotonic()
        n, writes = self.baseline_requests()
        points = [("request", k) for k in _spread(self.args.kill_points, n)]
        print(f"  b: a fault-free run makes {n} requests; killing at {len(points)} points in 1..{n}", flush=True)
        if self.store.has_writes:
            txn = _spread(self.args.txn_kill_points, writes)
            points += [("write", j) for j in txn]
            print(f"  b: and {writes} table writes; killing inside the transaction of {len(txn)} of them", flush=True)
        seed = self.args.seed_base
        for i, (where, k) in enumerate(points):
            tag = f"k={k}" if where == "request" else f"write={k}"
            scenario, checker, out = self.scenario(fig, "b", seed, f"-k{k}" if where == "request" else f"-w{k}", n=i)
            checker.set_name = self.set_label(f"b {tag}")
            if where == "request":
                faults = Faults(kill_after=k)
                r = self.run_one(fig, checker, out, f"killed-at-{k}", ["run", "--apply", "--output", "json"], faults)
                at = f"request #{k}"
            else:
                r = self.run_many(fig, checker, out, [(f"killed-in-write-{k}", ["run", "--apply", "--output", "json"])], Faults(),
                                  hold_write=k)[0]
                at = f"table write #{k}, its transaction open"
            if not r.killed and not r.hung:
                self.document(checker, r)  # finished before request k: still must not crash
            if r.killed:
                checker.excuse_unstored(f"killed at {at}")
            if checker.excused:
                # The killed runner held secrets of keys it had not stored. The next run must
                # leave those keys alone (young, maybe another runner's) and may be unable to
                # finish around them (exit 1 allowed); the run after the grace period must
                # delete them and converge.
                nxt = self.run_one(fig, checker, out, "next", ["run", "--apply", "--output", "json"])
                self.document(checker, nxt)
                if nxt.rc not in (0, 1) and not nxt.hung:
                    checker.violate("unexpected-exit", "next run", f"exit {nxt.rc} after a kill", "next")
                with self.proxy.state_lock:
                    checker.age_excused(ORPHAN_GRACE + timedelta(minutes=1))
                checker.phase = "aged the killed runner's unstored keys past the grace period"
            self.final(fig, checker, out, scenario)
            self.finish_scenario(fig, scenario, checker, out)
            self.progress(fig, tag)
        fig.wall = time.monotonic() - t0
        return fig

    def set_concurrency(self) -> Figures:
        fig = Figures("c: concurrency")
        t0 = time.monotonic()
        for seed in range(self.args.seed_base, self.args.seed_base + self.args.concurrency_seeds):
            for j, latency in enumerate((0.0, 0.05)):
                scenario, checker, out = self.scenario(fig, "c", seed, f"-{int(latency * 1000)}ms", n=seed + j)
                checker.set_name = self.set_label(f"c latency={int(latency * 1000)}ms")
                runs = [(f"runner-{i}", ["run", "--apply", "--job", "bot-keys", "--output", "json"]) for i in range(1, 5)]
                results = self.run_many(fig, checker, out, runs, Faults(latency=latency, seed=seed), paced=True)
                for r in results:
                    doc = self.document(checker, r)
                    if r.rc != 0 and not r.hung:
                        failed = _failed_actions(doc)
                        checker.violate(
                            "concurrent-runner-failed", r.label,
                            f"exit {r.rc}, want 0" + (f"; failed: {failed}" if failed else ""), "concurrent", dedup="",
                        )
                checker.phase = "after 4 concurrent runners"
                for user, orphans in checker.unstored_keys().items():
                    checker.report_orphans(user, orphans, "after 4 concurrent runners")
                checker.converged(when="after 4 concurrent runners", bots_only=True, ignore_unstored=True)  # orphans: above
                self.final(fig, checker, out, scenario)
                self.finish_scenario(fig, scenario, checker, out)
                self.progress(fig, f"{seed}/{int(latency * 1000)}ms")
        fig.wall = time.monotonic() - t0
        return fig

    def progress(self, fig: Figures, what) -> None:
        if self.args.verbose:
            print(f"  {fig.name} {what}: {len(fig.violations)} violations so far, {fig.stats.requests} requests", flush=True)


def _spread(count: int, n: int) -> list[int]:
    if n <= 0:
        return []
    if count >= n:
        return list(range(1, n + 1))
    if count == 1:
        return [1]
    return sorted({round(1 + i * (n - 1) / (count - 1)) for i in range(count)})


def _traceback_line(stderr: str, hidden: set[str]) -> str | None:
    if "Traceback (most recent call last)" not in stderr:
        return None
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    tail = next((ln for ln in reversed(lines) if not ln.startswith((" ", "{"))), lines[-1])
    for h in hidden:
        tail = tail.replace(h, "[secret]")
    return tail.strip()[:300]


def _failed_actions(doc) -> str:
    if not doc:
        return ""
    failed = [
        f"{a['kind']} {a['target']}: {a.get('error') or ''}".strip()
        for j in doc.get("jobs", [])
        for a in j.get("actions", [])
        if a.get("outcome") == "failed"
    ]
    errors = [e for j in doc.get("jobs", []) for e in (j.get("errors") or []) + ([j["error"]] if j.get("error") else [])]
    items = failed + errors
    return "; ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")


def print_table(figs: list[Figures], *, store_writes: bool = False) -> None:
    writes = ["table writes"] if store_writes else []
    headers = ["set", "scenarios", "runs", "requests", "forwarded", *writes, *FAULT_KINDS, "kills", "exit codes", "slowest run",
               "violations", "wall"]
    rows = []
    for f in figs:
        codes = ", ".join(f"{k}:{v}" for k, v in sorted(f.exit_codes.items(), key=lambda kv: str(kv[0])))
        rows.append([
            f.name, f.scenarios, f.runs, f.stats.requests, f.stats.forwarded, *([f.stats.store_writes] if store_writes else []),
            *[f.stats.faults.get(k, 0) for k in FAULT_KINDS],
            f.stats.kills, codes, f"{f.slowest_run:.1f}s", len(f.violations), f"{f.wall:.0f}s",
        ])
    total = Figures("total")
    for f in figs:
        total.stats.merge(f.stats)
        total.runs += f.runs
        total.scenarios += f.scenarios
        total.violations += f.violations
        total.wall += f.wall
        total.exit_codes.update(f.exit_codes)
    rows.append([
        "total", total.scenarios, total.runs, total.stats.requests, total.stats.forwarded,
        *([total.stats.store_writes] if store_writes else []),
        *[total.stats.faults.get(k, 0) for k in FAULT_KINDS], total.stats.kills, "",
        f"{max((f.slowest_run for f in figs), default=0):.1f}s", len(total.violations), f"{total.wall:.0f}s",
    ])
    table = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for i, r in enumerate(table):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0 or i == len(table) - 2:
            print("  ".join("-" * w for w in widths))


def print_violations(figs: list[Figures]) -> None:
    allv = [v for f in figs for v in f.violations]
    if not allv:
        print("\nno violations")
        return
    by_kind: dict[str, list[Violation]] = {}
    for v in allv:
        by_kind.setdefault(v.kind, []).append(v)
    print(f"\n{len(allv)} violations:")
    for kind, vs in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        seeds = sorted({f"{v.set} seed={v.seed}" for v in vs})
        print(f"\n== {kind}: {len(vs)} in {len(seeds)} scenario(s)")
        for v in vs:
            print(f"  {v.line()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fault-seeds", type=int, default=None, help="set a: scenarios with injected faults (default 30, quick 5)")
    p.add_argument("--kill-points", type=int, default=None, help="set b: SIGKILL points (default 100, quick 20)")
    p.add_argument("--store", choices=STORES, default="secretsmanager",
                   help="rotator's bot-key store under test (default secretsmanager; gen3workflow-db: a throwaway PostgreSQL)")
    p.add_argument("--txn-kill-points", type=int, default=None,
                   help="set b, gen3workflow-db: SIGKILLs inside a table write's transaction, spread over a fault-free run's "
                        "writes (default: every write, quick 6)")
    p.add_argument("--created-type", choices=("both", *CREATED_TYPES), default="both",
                   help="gen3workflow-db: system_key.created_time type (default both, alternating by scenario)")
    p.add_argument("--concurrency-seeds", type=int, default=None, help="set c: scenarios with 4 runners, each without and with 50 ms latency (default 20, quick 3)")
    p.add_argument("--quick", action="store_true", help="the reduced CI set: 5 / 20 / 3")
    p.add_argument("--fault-rate", type=float, default=0.2, help="set a: probability of a fault per request (default 0.2)")
    p.add_argument("--seed-base", type=int, default=0, help="first seed (to reproduce one: --seed-base S with a count of 1)")
    p.add_argument("--scale", type=int, default=1, help="up to this many users per shape (default 1)")
    p.add_argument("--rotator-src", default=str(REPO), help="directory holding the rotator package to test (default: this checkout)")
    p.add_argument("--self-test", action="store_true", help="run the sets against chaos/reference.py, a minimal correct rotator: must show no violations")
    p.add_argument("--rps", type=float, default=200,
                   help=f"{RATE_VARIABLE} for every run but set c's concurrent runners (default 200; 0: rotator's default)")
    p.add_argument("--rotator-env", action="append", metavar="NAME=VALUE",
                   help="an extra setting for every run, e.g. ROTATOR_AWS__CONCURRENCY=1 (repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write the figures and violations to FILE as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    defaults = (5, 20, 3) if args.quick else (30, 100, 20)
    for name, default in zip(("fault_seeds", "kill_points", "concurrency_seeds"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.txn_kill_points is None:
        args.txn_kill_points = 6 if args.quick else 10**6  # every write a fault-free run makes

    # SIGTERM (CI's timeout, a Ctrl-C'd make): clean up as on an exception, the database server included.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        suite = Suite(args)
    except StoreUnavailable as exc:
        print(f"chaos: store {args.store}: {exc}", file=sys.stderr)
        return 2
    figs: list[Figures] = []
    t0 = time.monotonic()
    try:
        broken = suite.preflight()
        if broken:
            print(f"chaos: rotator under {suite.src} does not start: {broken}", file=sys.stderr)
            return 2
        if suite.store_env and not suite.supports(suite.store_env):
            print(f"chaos: rotator under {suite.src} has no bot-key store {args.store} (its settings are refused)", file=sys.stderr)
            return 2
        if suite.fast_env and not suite.supports(suite.fast_env):
            print(f"  this rotator has no {RATE_VARIABLE}: runs keep its own pace", flush=True)
            suite.fast_env = {}
        print(f"rotator chaos: {args.fault_seeds} fault seeds (rate {args.fault_rate:g}), {args.kill_points} kill points, "
              f"{args.concurrency_seeds} concurrency seeds x 2 latencies; proxy {suite.proxy.url} -> moto {suite.proxy.moto_url}; "
              f"{suite.store.describe()}", flush=True)
        for count, fn in ((args.fault_seeds, suite.set_faults), (args.kill_points, suite.set_kills), (args.concurrency_seeds, suite.set_concurrency)):
            if count > 0:
                fig = fn()
                figs.append(fig)
                print(f"  {fig.name}: {fig.scenarios} scenarios, {len(fig.violations)} violations, {fig.wall:.0f}s", flush=True)
    finally:
        suite.close()
    print()
    print_table(figs, store_writes=suite.store.has_writes)
    if args.verbose:
        for f in figs:
            print(f"slowest runs of {f.name}: " + "; ".join(f"{d[0]}s {d[1]} {d[2]} (exit {d[3]})" for d in sorted(f.durations, reverse=True)[:5]))
    print_violations(figs)
    wall = time.monotonic() - t0
    print(f"\nwall time {wall:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args),
            "wall_seconds": round(wall, 1),
            "sets": [
                {
                    "set": f.name, "scenarios": f.scenarios, "runs": f.runs, "requests": f.stats.requests,
                    "forwarded": f.stats.forwarded, "store_writes": f.stats.store_writes, "faults": dict(f.stats.faults), "kills": f.stats.kills,
                    "exit_codes": {str(k): v for k, v in f.exit_codes.items()}, "slowest_run_seconds": round(f.slowest_run, 1),
                    "wall_seconds": round(f.wall, 1), "violations": [v.__dict__ for v in f.violations],
                    "slowest_runs": sorted(f.durations, reverse=True)[:10],
                }
                for f in figs
            ],
        }, indent=2) + "\n")
    if suite.kept_dirs:
        print(f"run outputs of scenarios with violations: {suite.workdir}")
    return 1 if any(f.violations for f in figs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
