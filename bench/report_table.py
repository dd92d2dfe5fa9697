"""The side-by-side table, the calls by operation, and the targets (a list of those missed)."""

from __future__ import annotations

from collections import Counter

from side_by_side import (
    DEFAULT_RATE,
    FAST_RATE,
    LATENCY,
    TARGETS,
    THROTTLE_BURST,
    THROTTLE_RATE,
    Measured,
    Scenario,
    floor,
    floor_by_operation,
    issue_floor,
)


def _fmt(value: float | None, spec: str, dash: str = "-") -> str:
    return dash if value is None else format(value, spec)


def _calls(m: Measured) -> int:
    return m.extra.get("calls_total", m.total)


def report(results: list[tuple[Scenario, dict[str, Measured]]], *, contrast: Measured, quick: bool) -> list[str]:
    missed: list[str] = []
    lines: list[str] = []

    def target(name: str, ok: bool, detail: str, *, gated: bool = True) -> None:
        lines.append(f"  {'ok    ' if ok else ('MISSED' if gated else 'missed')}  {name}: {detail}" + ("" if gated else " (not gated)"))
        if gated and not ok:
            missed.append(name)

    print(f"\nside by side: moto on loopback, +{LATENCY * 1000:.0f} ms per call at the proxy, calls counted there"
          + (" (--quick: 15 % scale)" if quick else ""))
    header = f"{'scenario':<40} {'subject':<30} {'wall s':>8} {'calls':>7} {'floor':>6} {'x floor':>8} {'vs loop':>9} {'RSS MiB':>8}  note"
    print(header)
    print("-" * len(header))
    for s, r in results:
        total_floor, parts = floor(s)
        loop = r["loop"]
        for i, key in enumerate(("rotator", "polite", "loop")):
            m = r[key]
            calls = _calls(m)
            speed = loop.wall / m.wall if key != "loop" else None
            note = m.note
            if key == "polite" and not m.note:
                note = f"measured, proxy throttling IAM > {THROTTLE_RATE:g}/s"
            if key == "polite" and m.note:
                note = f"extrapolated: {calls:,} calls at the {m.extra['rate']:.1f}/s of (b) @{DEFAULT_RATE}/s"
            if key == "loop" and m.note:
                sample = m.extra["sample"]
                note = (f"extrapolated from a 1-in-{s.loop_sample_every} sample ({sample.extra['processed']:,} users,"
                        f" {sample.total:,} calls, {sample.wall:.1f} s, {m.extra['per_call_ms']:.1f} ms/call)")
            ratio = _fmt(calls / total_floor if key != "loop" else None, ".3f", "")
            vs_loop = f"{speed:.1f}x" if speed else ""
            print(f"{s.title if i == 0 else '':<40} {m.subject:<30} {m.wall:>8.1f} {calls:>7,} {f'{total_floor:,}' if key != 'loop' else '':>6}"
                  f" {ratio:>8} {vs_loop:>9} {_fmt(m.rss_mib, '.1f'):>8}  {note}")
    print()
    r_by_name = {s.name: r for s, r in results}
    for s, _ in results:
        total_floor, parts = floor(s)
        print(f"floor {s.name} = " + " + ".join(f"{v:,} {k}" for k, v in parts.items()) + f" = {total_floor:,}")
        m = r_by_name[s.name]["rotator"]
        print(f"  issue #14's floor (the first six terms) = {issue_floor(s):,}: rotator @{FAST_RATE} at"
              f" {m.total / issue_floor(s):.3f} x of it")
    print("  (listing: GetAccountAuthorizationDetails pages, moto answers in one, + ListSecrets pages of 100 for bot-keys;"
          " report: Generate + GetCredentialReport; a store write is one call per key forgotten or stored; verifications:"
          " GetCallerIdentity as each new key; write second steps: UpdateSecretVersionStage of each staged write; store"
          " reads: GetSecretValue per bot user whose entry changes)")

    for s, r in results:
        columns = [("rotator", r["rotator"]), ("polite", r["polite"]) if not r["polite"].note else None,
                   ("loop", r.get("loop_sample", r["loop"]))]
        columns = [c for c in columns if c]
        names = {"rotator": f"rotator @{FAST_RATE}", "polite": f"rotator @{DEFAULT_RATE}",
                 "loop": "loop" if "loop_sample" not in r else f"loop 1/{s.loop_sample_every} sample"}
        ops = sorted({op for _, m in columns for op in m.calls}, key=lambda op: (op[0], op[1]))
        print(f"\ncalls by operation, {s.title}")
        print(f"  {'service':<16} {'operation':<34}" + "".join(f" {names[k]:>18}" for k, _ in columns))
        for op in ops:
            print(f"  {op[0]:<16} {op[1]:<34}" + "".join(f" {m.calls.get(op, 0):>18,}" for _, m in columns))
        print(f"  {'':<16} {'total':<34}" + "".join(f" {m.total:>18,}" for _, m in columns))
        excess = Counter(r["rotator"].calls)
        excess.subtract(floor_by_operation(s))
        over = sorted(((op, n) for op, n in excess.items() if n), key=lambda x: -x[1])
        print(f"  rotator @{FAST_RATE} above the floor: " + (", ".join(f"{op[1]} {n:+,}" for op, n in over) or "nothing")
              + f" (= {sum(n for _, n in over):+,})")
        for key, m in columns:
            if key != "loop" and m.extra.get("outcomes"):
                print(f"  {names[key]} outcomes: {m.extra['outcomes']}; job.progress events: {m.extra.get('progress_events', 0)};"
                      f" job durations (s): {m.extra.get('durations')}")

    print("\ntargets")
    (a, ra), (b, rb) = results
    for s, r in results:
        for key in ("rotator", "polite"):
            m = r[key]
            if m.note:
                continue
            total_floor, _ = floor(s)
            target(f"{s.name}: {m.subject} calls <= {TARGETS['floor_ratio']:g} x floor", m.total <= TARGETS["floor_ratio"] * total_floor,
                   f"{m.total:,} calls, floor {total_floor:,} ({m.total / total_floor:.3f} x)")
            target(f"{s.name}: {m.subject} peak RSS <= {TARGETS['rss_mib']:g} MiB", (m.rss_mib or 0) <= TARGETS["rss_mib"],
                   f"{m.rss_mib:.1f} MiB")
        for key in ("rotator", "polite", "loop_sample" if "loop_sample" in r else "loop"):
            m = r[key]
            if m.note:
                continue
            problems = list(m.extra.get("problems", [])) + ([f"exit code {m.exit_code}"] if m.exit_code else [])
            target(f"{s.name}: {m.subject} leaves the account right", not problems,
                   "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") if problems else "checked")
    speed = ra["loop"].wall / ra["rotator"].wall
    loop_a = ra["loop"]
    tags = loop_a.calls.get(("iam", "ListUserTags"), 0)
    untagged_wall = loop_a.wall - tags * loop_a.extra["work_seconds"] / max(loop_a.total - 1, 1)
    target(f"a: rotator @{FAST_RATE}/s >= {TARGETS['speedup_a']:g} x faster than the loop", speed >= TARGETS["speedup_a"],
           f"{ra['rotator'].wall:.1f} s against {ra['loop'].wall:.1f} s ({speed:.1f} x)", gated=not quick)
    lines.append(f"          (a loop skipping its {tags:,} ListUserTags, and so touching decoys, would take ~{untagged_wall:.0f} s:"
                 f" {untagged_wall / ra['rotator'].wall:.1f} x)")
    target(f"a: rotator @{FAST_RATE}/s under {TARGETS['wall_a_seconds']:g} s", ra["rotator"].wall < TARGETS["wall_a_seconds"],
           f"{ra['rotator'].wall:.1f} s", gated=False)
    target(f"a: rotator @{DEFAULT_RATE}/s (default) under {TARGETS['wall_a_seconds']:g} s",
           ra["polite"].wall < TARGETS["wall_a_seconds"], f"{ra['polite'].wall:.0f} s, extrapolated", gated=False)
    polite = rb["polite"]
    iam_calls = sum(v for (svc, _), v in polite.calls.items() if svc == "iam")
    throttled = sum(polite.throttled.values())
    fraction = throttled / iam_calls if iam_calls else 0.0
    target(f"b: throttled under the default limiter < {TARGETS['throttled_fraction']:.0%} of IAM calls",
           fraction < TARGETS["throttled_fraction"],
           f"{throttled} of {iam_calls:,} IAM calls ({fraction:.2%}) with the proxy throttling IAM above {THROTTLE_RATE:g}/s"
           f" (burst {THROTTLE_BURST:g}); peak IAM calls in 1 s: {polite.extra.get('peak_iam_per_second')}")
    c_iam = sum(v for (svc, _), v in contrast.calls.items() if svc == "iam")
    c_throttled = sum(contrast.throttled.values())
    lines.append(f"          contrast, not gated: {contrast.extra['scenario'].title} at {FAST_RATE}/s through the same proxy:"
                 f" {c_throttled} of {c_iam:,} IAM calls throttled ({c_throttled / max(c_iam, 1):.2%}), peak IAM calls in 1 s:"
                 f" {contrast.extra.get('peak_iam_per_second')}, {contrast.wall:.1f} s (botocore's adaptive retries then slow it),"
                 f" outcomes {contrast.extra.get('outcomes')}")
    print("\n".join(lines))
    return missed
