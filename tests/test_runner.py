"""The generic runner with fake jobs: one boundary per job, nothing lost, configuration stops everything first."""

from datetime import UTC, datetime

import pytest

from rotator import runner as runner_module
from rotator.errors import ConfigError
from rotator.executor import per_unit
from rotator.jobs.base import Plan
from rotator.model import DELETE_KEY, DONE, Action, Outcome
from rotator.runner import Runner
from rotator.settings import Settings

NOW = datetime(2026, 11, 30, 3, tzinfo=UTC)
SECRET = "sensitive-value-read-from-aws"


class FakeJob:
    default_schedule = ""
    permissions = ()

    def __init__(self, name, *, observe_raises=None, execute_raises_after=None, prepare_raises=None, actions=2):
        self.name = name
        self.observe_raises = observe_raises
        self.execute_raises_after = execute_raises_after
        self.prepare_raises = prepare_raises
        self.actions = tuple(Action(name, DELETE_KEY, f"{name}/k{i}", "test", user="u", key_id=f"k{i}") for i in range(actions))
        self.observed = self.executed = False

    def prepare(self, ctx):
        if self.prepare_raises:
            raise self.prepare_raises

    def observe(self, ctx):
        self.observed = True
        if self.observe_raises:
            raise self.observe_raises
        return "seen"

    def plan(self, observed, *, now, settings):
        assert observed == "seen" and now == NOW
        return Plan(job=self.name, actions=self.actions, managed=100)

    def execute(self, plan, ctx):
        self.executed = True
        for n, action in enumerate(plan.actions):
            if n == self.execute_raises_after:
                raise TypeError(f"unexpected {SECRET}")
            yield Outcome(action, DONE)

    def record_metrics(self, metrics, result, *, now, settings):
        pass

    def describe(self, plan):
        return f"{len(plan.actions)} things"


class FakeAws:
    region = "us-east-1"

    def limit_rate(self, requests_per_second):
        pass

    def account_id(self):
        return "123456789012"

    def client(self, service, **_):
        raise AssertionError("fake jobs make no AWS calls")  # the capacity check says so in a warning, and goes on


@pytest.fixture
def run(monkeypatch):
    def run(*jobs, dry_run=False):
        by_name = {j.name: j for j in jobs}
        monkeypatch.setattr(runner_module, "get_job", by_name.__getitem__)
        settings = Settings(hostname="gen3.example.org")
        return Runner(settings, aws=FakeAws(), clock=lambda: NOW).run(list(by_name), dry_run=dry_run)

    return run


def test_a_job_that_cannot_observe_fails_alone(run, log_output):
    broken = FakeJob("a", observe_raises=TypeError(f"'list' object has no attribute {SECRET}"))
    fine = FakeJob("b")
    result = run(broken, fine)
    a, b = result.jobs
    assert a.outcome == "error" and a.error.startswith("TypeError in ") and SECRET not in a.error
    assert b.outcome == "success" and [o.result for o in b.outcomes] == ["done", "done"]
    assert not broken.executed and result.exit_code == 1
    assert '"stage": "observe"' in log_output.getvalue() and SECRET not in log_output.getvalue()


def test_what_was_done_before_a_job_failed_still_counts(run, log_output):
    job = FakeJob("a", execute_raises_after=1, actions=3)
    result = run(job, FakeJob("b"))
    a, b = result.jobs
    assert [o.result for o in a.outcomes] == ["done"]  # the first action happened: it is reported
    assert a.outcome == "error" and SECRET not in a.error
    assert b.outcome == "success"
    assert "job.execute_failed" in log_output.getvalue()


def test_configuration_errors_stop_the_run_before_anything_is_observed(run):
    first = FakeJob("a")
    with pytest.raises(ConfigError):
        run(first, FakeJob("b", prepare_raises=ConfigError("no region")))
    assert not first.observed


def test_dry_run_executes_nothing(run):
    job = FakeJob("a")
    result = run(job, dry_run=True)
    assert not job.executed and [o.result for o in result.jobs[0].outcomes] == ["dry-run", "dry-run"]


def test_a_brake_on_one_job_stops_every_job(run, monkeypatch):
    many = FakeJob("a", actions=600)  # more than ROTATOR_SAFETY__MAX_DELETIONS
    other = FakeJob("b")
    result = run(many, other)
    assert result.exit_code == 3 and result.jobs[0].brake.limit == "max_deletions"
    assert not many.executed and not other.executed


def test_per_unit_boundary_fails_the_rest_of_that_unit_only():
    actions = [Action("j", DELETE_KEY, f"t{i}", "r") for i in range(4)]

    def apply(unit_actions):
        for action in unit_actions:
            if action.target == "t1":
                raise KeyError(SECRET)
            yield Outcome(action, DONE)

    outcomes = list(per_unit([("u1", actions[:2]), ("u2", actions[2:])], apply))
    assert [(o.action.target, o.result) for o in outcomes] == [("t0", "done"), ("t1", "failed"), ("t2", "done"), ("t3", "done")]
    assert SECRET not in outcomes[1].error and outcomes[1].error.startswith("KeyError in ")
