"""Render a run's plan and outcomes for people (text) and programs (one JSON document).

Only actions, reasons and counts: a secret value is never part of a result.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rotator import __version__
from rotator.jobs import get_job
from rotator.logs import is_terminal
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
                "age_days": action.age_days,
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
        "account": result.account_id,
        "dry_run": result.dry_run,
        "exit_code": result.exit_code,
        "iam_users": {"users": quota.users, "quota": quota.quota, "room_for_workflow_users": quota.room_for_workflow_users}
        if quota
        else None,
        "jobs": jobs,
    }


def render_json(result: RunResult, *, command: str) -> str:
    return json.dumps(to_document(result, command=command), indent=2, sort_keys=False)


def render_text(result: RunResult, *, command: str, width: int | None = None) -> str:
    """The plan/outcome table and one summary line per job, fitting ``width`` columns (default: the terminal's)."""
    width = width or terminal_width()
    doc = to_document(result, command=command)
    actions = [a for j in doc["jobs"] for a in j["actions"]]
    mode = "dry-run: nothing was changed" if result.dry_run else "applied"
    lines = fit([f"rotator {command}", f"account {result.account_id}", f"{result.now:%Y-%m-%d %H:%M:%S} UTC", mode], width)
    lines.append("")
    lines += action_table(actions, width) if actions else ["nothing to do"]
    lines.append("")
    shown: set[str] = set()
    for job in doc["jobs"]:
        summary = ", ".join(f"{n} {k}" for k, n in sorted(job["summary"].items())) or "no actions"
        detail = job["detail"] if not job["not_run"] else f"not run ({job['not_run']})"
        lines += fit([f"{job['job']}: {job['outcome']}", detail, summary], width)
        for s in job["skipped"]:
            if s["name"] not in shown:
                shown.add(s["name"])
                lines += wrap(f"skipped {s['name']}: {s['reason']}", width, indent="  ")
        for e in job["errors"]:
            lines += wrap(f"error: {e}", width, indent="  ")
        if job["error"]:
            lines += wrap(f"error: {job['error']}", width, indent="  ")
        if job["brake"]:
            lines += wrap(f"REFUSED: {job['brake']['message']}", width, indent="  ")
    if result.user_quota is not None:
        lines += wrap(result.user_quota.summary(), width, indent="")
    return "\n".join(lines)


# --- fitting text to a terminal -----------------------------------------------------------

DEFAULT_WIDTH = 80
MIN_TARGET_WIDTH = 20
GAP = "  "


def terminal_width(stream: TextIO | None = None) -> int:
    """The terminal's width when ``stream`` (stdout by default) is one; 80 for a pipe, a file or a CI log."""
    interactive = is_terminal(sys.stdout if stream is None else stream)
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns if interactive else DEFAULT_WIDTH


def action_table(actions: Sequence[Mapping[str, Any]], width: int) -> list[str]:
    """JOB, ACTION, TARGET, OUTCOME per action; its reason (and error) wrapped below, under ACTION.

    TARGET takes what the other columns leave; a longer target is folded after a ``/`` (between
    a user and its key id) where it can be, and continues on the next line in its column.
    """
    headers = ("JOB", "ACTION", "TARGET", "OUTCOME")
    job_w = max([len(headers[0]), *(len(a["job"]) for a in actions)])
    kind_w = max([len(headers[1]), *(len(a["kind"]) for a in actions)])
    outcome_w = max([len(headers[3]), *(len(a["outcome"]) for a in actions)])
    room = width - job_w - kind_w - outcome_w - 3 * len(GAP)
    natural = max([len(headers[2]), *(len(a["target"]) for a in actions)])
    target_w = max(min(natural, room), min(natural, MIN_TARGET_WIDTH))  # on a very narrow terminal, rows overflow
    under_target = " " * (job_w + kind_w + 2 * len(GAP))
    under_action = " " * (job_w + len(GAP))

    def row(job: str, kind: str, target: str, outcome: str) -> str:
        return GAP.join((job.ljust(job_w), kind.ljust(kind_w), target.ljust(target_w), outcome)).rstrip()

    lines = [row(*headers)]
    for a in actions:
        first, *rest = fold(a["target"], target_w, then=width - len(under_target))
        lines.append(row(a["job"], a["kind"], first, a["outcome"]))
        lines += [under_target + piece for piece in rest]  # OUTCOME is on the first line only: the rest may use its room
        lines += wrap(a["reason"], width, indent=under_action)
        if a["error"]:
            lines += wrap(f"error: {a['error']}", width, indent=under_action)
    return lines


def fold(text: str, width: int, *, then: int | None = None) -> list[str]:
    """``text`` cut into pieces of at most ``width`` (after the first: ``then``) characters: after a
    ``/`` where one fits, else after a space or a ``-``, else at the width. Names stay whole where they fit."""
    pieces = []
    while len(text) > width:
        cut = text.rfind("/", 0, width) + 1 or max(text.rfind(" ", 0, width), text.rfind("-", 0, width)) + 1 or width
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
        width = max(then or width, 1)
    return [*pieces, text]


def wrap(text: str, width: int, *, indent: str) -> list[str]:
    """``text`` wrapped to ``width`` at spaces (never inside a name), continuation lines two further in."""
    return textwrap.wrap(
        text, width, initial_indent=indent, subsequent_indent=indent + GAP, break_on_hyphens=False
    )


def fit(parts: Sequence[str], width: int) -> list[str]:
    """``parts`` joined with `` · ``, starting a new (indented) line where the next would pass ``width``."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += f" · {part}"
        else:
            lines.append(GAP + part)
    return lines
