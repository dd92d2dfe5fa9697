"""What a job is, what it plans, and what it gets to work with during one run.

A job is one module under ``rotator/jobs/`` defining one object with:
- ``name``, ``default_schedule`` and ``permissions`` (every AWS operation it may call);
- ``prepare(ctx)``: checks that need no AWS call (ConfigError: exit 2, nothing touched);
- ``observe(ctx)``: read-only; what the account looks like;
- ``plan(observed, now=…, settings=…)``: pure; that job's own typed :class:`Plan`;
- ``execute(plan, ctx)``: the only code that changes anything (called by the executor,
  which alone decides dry-run); yields each action's outcome as it happens, each unit of
  work (a bot user, a secret) inside :func:`rotator.executor.per_unit`'s boundary;
- ``record_metrics(metrics, result, now=…, settings=…)`` and ``describe(plan)``: its part of
  the metrics and of the summary line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rotator.model import Action, Outcome, Skipped

if TYPE_CHECKING:
    from rotator.aws import Aws
    from rotator.inventory import AccountSnapshot
    from rotator.metrics import Metrics
    from rotator.runner import JobResult
    from rotator.settings import Settings

T = TypeVar("T")


def frozen_mapping(mapping: Mapping[str, T] | None = None) -> Mapping[str, T]:
    """A read-only mapping, for plans (frozen dataclasses hold no mutable dicts)."""
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Plan:
    """What one job would do, and what it saw. Each job extends it with its own fields."""

    job: str
    actions: tuple[Action, ...]
    managed: int
    """Keys (or secrets) the job manages: the base of the deletion-fraction brake."""
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[str, ...] = ()
    """Lookups that failed (those users or secrets were left alone): the job fails."""
    inventory_source: str = ""

    def document(self) -> dict[str, Any]:
        """The job's own fields for the JSON output."""
        return {"managed": self.managed, "inventory_source": self.inventory_source}


@dataclass
class RunContext:
    """One run's settings, clients, clock and per-run caches, shared by the selected jobs."""

    settings: Settings
    aws: Aws
    now: datetime
    clock: Callable[[], datetime]
    account_id: str | None = None
    """Set once the AWS identity was checked."""
    only_users: frozenset[str] | None = None
    """``--user``: limit the run to these IAM user names."""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """One object per run for ``key`` (a client wrapper, a status source, the IAM snapshot)."""
        if key not in self._cache:
            self._cache[key] = factory()
        return self._cache[key]

    def close(self) -> None:
        """Release what the run opened (a database pool…)."""
        for shared in self._cache.values():
            close = getattr(shared, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001, S110 - closing never fails a run
                    pass
        self._cache.clear()

    @property
    def account(self) -> AccountSnapshot:
        from rotator.inventory import AccountSnapshot

        return self.shared(
            "account",
            lambda: AccountSnapshot(
                self.aws.client("iam"), hostname=self.settings.hostname, exclude=self.settings.exclude_users, only=self.only_users
            ),
        )


class Job(Protocol):
    name: str
    default_schedule: str
    permissions: tuple[str, ...]

    def prepare(self, ctx: RunContext) -> None: ...

    def observe(self, ctx: RunContext) -> Any: ...

    def plan(self, observed: Any, *, now: datetime, settings: Settings) -> Plan: ...

    def execute(self, plan: Plan, ctx: RunContext) -> Iterator[Outcome]: ...

    def record_metrics(self, metrics: Metrics, result: JobResult, *, now: datetime, settings: Settings) -> None: ...

    def describe(self, plan: Plan) -> str: ...
