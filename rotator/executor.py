"""The executor: the one place that decides dry-run, and the pieces every job's ``execute`` uses.

A job's ``execute`` is the only code that changes anything, and the executor calls it only
when the run applies changes; in a dry-run every planned action is recorded as ``dry-run``.
Each action is attempted on its own: one that fails, whatever it raises, becomes a failed
outcome (with a description that carries no value read from AWS), and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import structlog

from rotator.aws import describe_error, error_code
from rotator.model import CREATE_KEY, DELETE_KEY, DELETE_SECRET, DONE, DRY_RUN, FAILED, FORGET_KEY, Action, Outcome

if TYPE_CHECKING:
    from rotator.jobs.base import Job, Plan, RunContext

log = structlog.get_logger("rotator.executor")

_DONE_EVENTS = {
    DELETE_KEY: "key.deleted",
    CREATE_KEY: "key.created",
    FORGET_KEY: "store.key_forgotten",
    DELETE_SECRET: "secret.deleted",
}


class Executor:
    def __init__(self, *, dry_run: bool, dry_run_level: str = "info") -> None:
        self.dry_run = dry_run
        self.dry_run_level = dry_run_level

    def execute(self, job: Job, plan: Plan, ctx: RunContext, outcomes: list[Outcome]) -> None:
        """Append each action's outcome to ``outcomes`` as it happens (so none is lost if the job fails)."""
        if self.dry_run:
            outcomes.extend(record(Outcome(a, DRY_RUN), level=self.dry_run_level) for a in plan.actions)
            return
        # Jobs yield outcomes in plan order (their parallel work is reordered by ordered_map), so the
        # outcome events are logged here, in that order, whatever order the work finished in.
        for outcome in job.execute(plan, ctx):
            outcomes.append(record(outcome))


def per_unit(units: Iterable[tuple[str, Sequence[Action]]], apply: Callable[[Sequence[Action]], Iterator[Outcome]]) -> Iterator[Outcome]:
    """Apply each unit's actions (one bot user's, one secret's…) inside its own failure boundary.

    Whatever ``apply`` raises fails the rest of that unit's actions, with a description that
    carries no value read from AWS; the next unit goes on.
    """
    for unit, actions in units:
        done: set[int] = set()
        try:
            for outcome in apply(actions):
                done.add(id(outcome.action))
                yield outcome
        except Exception as exc:  # noqa: BLE001 - the boundary: this unit fails, the others go on
            error = describe_error(exc)
            log.error("unit.failed", unit=unit, error=error)
            yield from (Outcome(a, FAILED, error) for a in actions if id(a) not in done)


def record(outcome: Outcome, *, level: str = "info") -> Outcome:
    """Log one action's outcome under its fixed event name, and return it (the executor does, in plan order)."""
    a = outcome.action
    fields = dict(job=a.job, action=a.kind, target=a.target, reason=a.reason, outcome=outcome.result)
    if outcome.result == FAILED:
        log.error("action.failed", error=outcome.error, **fields)
    elif outcome.result == DONE:
        log.info(_DONE_EVENTS.get(a.kind, "action.done"), **fields)
    else:
        if outcome.error:
            fields["error"] = outcome.error
        getattr(log, level)(f"action.{outcome.result.replace('-', '_')}", **fields)
    return outcome


def attempt(action: Action, call: Callable[[], object], *, already_done: Collection[str] = ()) -> Outcome:
    """Run one change; its outcome (the executor logs it).

    An AWS error whose code is in ``already_done`` (the thing is already gone) is what we
    wanted: done. Anything else raised fails this action alone.
    """
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - one action's failure never stops the others
        if error_code(exc) in already_done:
            return Outcome(action, DONE)
        return Outcome(action, FAILED, describe_error(exc))
    return Outcome(action, DONE)
