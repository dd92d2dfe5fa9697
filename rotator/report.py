"""Render a run's plan and outcomes for people (text) and programs (one JSON document).

Only actions, reasons and counts: a secret value is never part of a result.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rotator import __version__
from rotator.jobs import get_job
from rotator.runner import RunResult


def to_document(result: RunResult, *, command: str) -> dict[str, Any]:
    jobs = []
    for job in result.jobs:
        outcomes = {id(o.action): o for o in job.outcomes}
        actions = []
        for action in job.plan.actions if job.plan else ():
            outcome = outcomes.get(id(action))
            entry = {
                "job": action.job,
                "kind": action.kind,
                "target": action.target,
                "reason": action.reason,
                "outcome": outcome.result if outcome else ("refused" if job.brake else "not-run"),
                "error": outcome.error if outcome else None,
                # Separate fields for scripts: a secret's name contains "/" too.
                "reason_code": action.reason_code,
                "user": action.user,
                "key_id": action.key_id,
                "secret": action.target if action.run_id is not None else None,
                "run_id": action.run_id,
            }
            if outcome and outcome.created_key_id:
                entry["created_key_id"] = outcome.created_key_id
            actions.append(entry)
        plan = job.plan
        jobs.append(
            {
                "job": job.job,
                "outcome": job.outcome,
                # Every job's document has these keys; a job's plan fills in the ones it has.
                "managed_users": None,
                "managed": None,
                "inventory_source": None,
                "states": {},
                **(plan.document() if plan else {}),
                "detail": get_job(job.job).describe(plan) if plan else "not planned",
                "skipped": [{"name": s.name, "reason": s.reason} for s in plan.skipped] if plan else [],
                "errors": list(plan.errors) if plan else [],
                "error": job.error,
                "brake": {"limit": job.brake.limit, "message": job.brake.message} if job.brake else None,
                "not_run": job.not_run,
                "actions": actions,
                "summary": dict(Counter(a["outcome"] for a in actions)),
            }
        )
    quota = result.user_quota
    return {
        "command": command,
        "version": __version__,
        "run_id": result.run_id,
        "hostname": result.hostname,
        "now": result.now.isoformat(),
        "account_id": result.account_id,
        "dry_run": result.dry_run,
        "exit_code": result.exit_code,
        "iam_users": {"users": quota.users, "quota": quota.quota, "room_for_workflow_users": quota.room_for_workflow_users}
        if quota
        else None,
        "jobs": jobs,
    }


def render_json(result: RunResult, *, command: str) -> str:
    return json.dumps(to_document(result, command=command), indent=2, sort_keys=False)


def render_text(result: RunResult, *, command: str) -> str:
    doc = to_document(result, command=command)
    rows = [(a["job"], a["kind"], a["target"], a["reason"], a["outcome"]) for j in doc["jobs"] for a in j["actions"]]
    lines = []
    mode = "dry-run: nothing was changed" if result.dry_run else "applied"
    lines.append(f"rotator {command} · account {result.account_id} · {result.now:%Y-%m-%d %H:%M:%S} UTC · {mode}")
    lines.append("")
    if rows:
        headers = ("JOB", "ACTION", "TARGET", "REASON", "OUTCOME")
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        for row in [headers, *rows]:
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    else:
        lines.append("nothing to do")
    lines.append("")
    shown: set[str] = set()
    for job in doc["jobs"]:
        summary = ", ".join(f"{n} {k}" for k, n in sorted(job["summary"].items())) or "no actions"
        detail = job["detail"] if not job["not_run"] else f"not run ({job['not_run']})"
        lines.append(f"{job['job']}: {job['outcome']} · {detail} · {summary}")
        for s in job["skipped"]:
            if s["name"] not in shown:
                shown.add(s["name"])
                lines.append(f"  skipped {s['name']}: {s['reason']}")
        for e in job["errors"]:
            lines.append(f"  error: {e}")
        if job["error"]:
            lines.append(f"  error: {job['error']}")
        if job["brake"]:
            lines.append(f"  REFUSED: {job['brake']['message']}")
    if result.user_quota is not None:
        lines.append(result.user_quota.summary())
    return "\n".join(lines)
