"""run-secrets planner tables: every status, not-found, UNKNOWN, API errors, age thresholds."""

from datetime import UTC, datetime, timedelta

import pytest

from rotator.jobs.run_secrets import plan_run_secrets, run_secret_verdict
from rotator.model import RunSecret
from rotator.runstatus import RunStatus
from rotator.settings import RunSecretsSettings

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
SEQERA = RunSecretsSettings(status_source="seqera", seqera={"url": "https://seqera.example.org/api", "token": "t"})
TES = RunSecretsSettings(
    status_source="tes", tes={"url": "https://tes.example.org/ga4gh/tes/v1"}, patterns=[r"^tes-(?P<run_id>[\w-]+)/\w+$"]
)
NONE = RunSecretsSettings()


def secret(age, run_id="abc123", **kw):
    return RunSecret(name=f"tower-{run_id}/TOKEN", arn="arn:x", created=NOW - age, run_id=run_id, **kw)


H, D = timedelta(hours=1), timedelta(days=1)


@pytest.mark.parametrize(
    ("settings", "age", "status", "state", "deleted"),
    [
        (SEQERA, 2 * H, RunStatus("finished", "SUCCEEDED"), "finished", True),
        (SEQERA, 2 * H, RunStatus("finished", "FAILED"), "finished", True),
        (SEQERA, 2 * H, RunStatus("finished", "CANCELLED"), "finished", True),
        (SEQERA, 2 * H, RunStatus("active", "RUNNING"), "active", False),
        (SEQERA, 90 * D, RunStatus("active", "RUNNING"), "active", False),  # a running run keeps its secrets, however old
        (SEQERA, 2 * H, RunStatus("active", "SUBMITTED"), "active", False),
        (SEQERA, 29 * D, RunStatus("unknown", "UNKNOWN"), "unknown", False),
        (SEQERA, 31 * D, RunStatus("unknown", "UNKNOWN"), "expired", True),
        (SEQERA, 30 * D + 23 * H, RunStatus("not-found", "HTTP 404"), "unknown", False),
        (SEQERA, 31 * D, RunStatus("not-found", "HTTP 404"), "expired", True),
        (SEQERA, 90 * D, RunStatus("error", "HTTP 500"), "error", False),  # an outage never deletes
        (SEQERA, 90 * D, RunStatus("error", "timeout"), "error", False),
        (SEQERA, 90 * D, RunStatus("error", "HTTP 401"), "error", False),
        (SEQERA, 59 * timedelta(minutes=1), RunStatus("finished", "SUCCEEDED"), "too-young", False),
        (SEQERA, 60 * timedelta(minutes=1), RunStatus("finished", "SUCCEEDED"), "finished", True),
        (TES, 2 * H, RunStatus("finished", "COMPLETE"), "finished", True),
        (TES, 2 * H, RunStatus("finished", "EXECUTOR_ERROR"), "finished", True),
        (TES, 2 * H, RunStatus("finished", "SYSTEM_ERROR"), "finished", True),
        (TES, 2 * H, RunStatus("finished", "CANCELED"), "finished", True),
        (TES, 30 * timedelta(minutes=1), RunStatus("finished", "EXECUTOR_ERROR"), "too-young", False),  # Funnel may retry
        (TES, 2 * H, RunStatus("active", "PREEMPTED"), "active", False),
        (TES, 2 * H, RunStatus("active", "QUEUED"), "active", False),
        (NONE, 2 * H, RunStatus("unknown", "no status source"), "unknown", False),
        (NONE, 31 * D, RunStatus("unknown", "no status source"), "expired", True),
        (SEQERA, 2 * H, None, "error", False),  # no answer at all
        (SEQERA, 29 * D, RunStatus("not-visible", "not visible: 403 in workspace 7"), "not-visible", False),
        (SEQERA, 31 * D, RunStatus("not-visible", "not visible: 403 in workspace 7"), "expired", True),
        (TES, 2 * H, RunStatus("finished", "EXECUTOR_ERROR", ended=NOW - 7 * H, may_retry=True), "finished", True),
        (TES, 2 * H, RunStatus("finished", "EXECUTOR_ERROR", ended=NOW - 5 * H, may_retry=True), "active", False),  # may be retried
        (TES, 2 * H, RunStatus("finished", "SYSTEM_ERROR", ended=None, may_retry=True), "unknown", False),
        (TES, 31 * D, RunStatus("finished", "SYSTEM_ERROR", ended=None, may_retry=True), "expired", True),
    ],
)
def test_verdicts(settings, age, status, state, deleted):
    got_state, reason = run_secret_verdict(secret(age), status, now=NOW, settings=settings, region="us-east-1")
    assert got_state == state
    assert (reason is not None) is deleted


def test_special_secrets():
    finished = RunStatus("finished", "SUCCEEDED")
    cases = {
        "malformed": RunSecret("tower-x/bad-name", "arn", NOW - 5 * D, None),
        "pending-deletion": secret(5 * D, pending_deletion=True),
        "replica": secret(5 * D, primary_region="eu-west-1"),
        "replicated": secret(5 * D, replica_regions=("us-west-2",)),
    }
    for expected, s in cases.items():
        assert run_secret_verdict(s, finished, now=NOW, settings=SEQERA, region="us-east-1") == (expected, None)
    with_replicas = RunSecretsSettings(**{**SEQERA.model_dump(), "remove_replicas": True})
    assert run_secret_verdict(cases["replicated"], finished, now=NOW, settings=with_replicas, region="us-east-1")[0] == "finished"


def test_plan_reasons_and_counts():
    secrets = [secret(2 * H, "run1"), secret(2 * H, "run2"), secret(40 * D, "run3"), RunSecret("tower-?/x", "a", NOW, None)]
    statuses = {
        "run1": RunStatus("finished", "SUCCEEDED"),
        "run2": RunStatus("active", "RUNNING"),
        "run3": RunStatus("not-found", "HTTP 404"),
    }
    actions, states = plan_run_secrets(secrets, statuses, now=NOW, settings=SEQERA, region="us-east-1")
    assert [(a.target, a.reason) for a in actions] == [
        ("tower-run1/TOKEN", "run run1 SUCCEEDED (seqera) in us-east-1"),
        ("tower-run3/TOKEN", "run run3 not known finished (HTTP 404; seqera), secret 40d > 30d in us-east-1"),
    ]
    assert states == {"finished": 1, "active": 1, "expired": 1, "malformed": 1}
