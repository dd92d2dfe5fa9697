"""The seqera and tes sources against a loopback server serving the documented shapes."""

import pytest

from fake_status_api import FakeStatusApi
from rotator.jobs.run_secrets import lookup_statuses
from rotator.runstatus import RunStatus
from rotator.runstatus.none import NoSource
from rotator.runstatus.seqera import SeqeraSource
from rotator.runstatus.tes import TesSource


@pytest.fixture
def api():
    fake = FakeStatusApi().start()
    yield fake
    fake.stop()


def seqera(api, token=None, timeout=2.0, workspace_id="42"):
    return SeqeraSource(url=api.seqera_url, token=token or api.token, workspace_ids=[workspace_id] if workspace_id else [], timeout_seconds=timeout)


def tes(api, timeout=2.0, **auth):
    auth = auth or {"token": api.token}
    return TesSource(url=api.tes_url, token=auth.get("token"), username=auth.get("username"), password=auth.get("password"), timeout_seconds=timeout)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("SUCCEEDED", RunStatus("finished", "SUCCEEDED")),
        ("FAILED", RunStatus("finished", "FAILED")),
        ("CANCELLED", RunStatus("finished", "CANCELLED")),
        ("SUBMITTED", RunStatus("active", "SUBMITTED")),
        ("RUNNING", RunStatus("active", "RUNNING")),
        ("UNKNOWN", RunStatus("unknown", "UNKNOWN")),
        ("WEIRD", RunStatus("error", "unexpected status WEIRD")),
        (500, RunStatus("error", "HTTP 500")),
        (403, RunStatus("not-visible", "not visible: 403 in workspace 42")),  # Seqera's answer for another workspace's run
        (404, RunStatus("not-visible", "not visible: 404 in workspace 42")),
        (401, RunStatus("error", "HTTP 401")),
    ],
)
def test_seqera_states(api, answer, expected):
    api.seqera["abc123"] = answer
    got = seqera(api).lookup("abc123")
    assert (got.state, got.detail) == (expected.state, expected.detail)


def test_seqera_request_shape(api):
    api.seqera["abc123"] = "RUNNING"
    seqera(api).lookup("abc123")
    path, query, headers = api.requests[-1]
    assert path == "/api/workflow/abc123"
    assert query == {"workspaceId": ["42"]}
    assert headers["Authorization"] == f"Bearer {api.token}"
    assert headers["Accept"] == "application/json"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("COMPLETE", RunStatus("finished", "COMPLETE")),
        ("EXECUTOR_ERROR", RunStatus("finished", "EXECUTOR_ERROR", may_retry=True)),  # no end_time: see below
        ("SYSTEM_ERROR", RunStatus("finished", "SYSTEM_ERROR", may_retry=True)),
        ("CANCELED", RunStatus("finished", "CANCELED")),
        ("QUEUED", RunStatus("active", "QUEUED")),
        ("INITIALIZING", RunStatus("active", "INITIALIZING")),
        ("RUNNING", RunStatus("active", "RUNNING")),
        ("PAUSED", RunStatus("active", "PAUSED")),
        ("CANCELING", RunStatus("active", "CANCELING")),
        ("PREEMPTED", RunStatus("active", "PREEMPTED")),
        ("UNKNOWN", RunStatus("unknown", "UNKNOWN")),
        (500, RunStatus("error", "HTTP 500")),
    ],
)
def test_tes_states(api, answer, expected):
    api.tes["task1"] = answer
    assert tes(api).lookup("task1") == expected


def test_tes_request_shape_and_basic_auth(api):
    api.basic = ("funnel", "pa55")
    api.tes["task1"] = "COMPLETE"
    assert tes(api, username="funnel", password="pa55").lookup("task1").state == "finished"
    path, query, _ = api.requests[-1]
    assert (path, query) == ("/ga4gh/tes/v1/tasks/task1", {"view": ["BASIC"]})  # BASIC: the logs' end_time
    assert tes(api, username="funnel", password="wrong").lookup("task1") == RunStatus("error", "HTTP 401")


@pytest.mark.parametrize("make", [seqera, tes])
def test_not_found_and_unauthorised(api, make):
    expected = ("not-visible", "not visible: 404 in workspace 42") if make is seqera else ("not-found", "HTTP 404")
    got = make(api).lookup("nosuchrun")
    assert (got.state, got.detail) == expected
    api.seqera["r1"] = api.tes["r1"] = "RUNNING"
    bad = seqera(api, token="wrong") if make is seqera else tes(api, token="wrong")
    assert (bad.lookup("r1").state, bad.lookup("r1").detail) == ("error", "HTTP 401")


@pytest.mark.parametrize("make", [seqera, tes])
def test_slow_answer_hits_the_timeout(api, make):
    api.seqera["slow"] = api.tes["slow"] = "SUCCEEDED" if make is seqera else "COMPLETE"
    api.delay["slow"] = 1.5
    got = make(api, timeout=0.3).lookup("slow")
    assert (got.state, got.detail) == ("error", "timeout")


def test_unreachable_api_is_an_error(api):
    url = api.seqera_url
    api.stop()
    status = SeqeraSource(url=url, token="t", timeout_seconds=1).lookup("r1")
    assert status.state == "error"


def test_token_never_in_repr_or_status(api):
    source = seqera(api)
    api.seqera["r"] = 500
    assert api.token not in repr(source) + repr(source.lookup("r")) + repr(source.__dict__)


def test_one_lookup_per_run_bounded_concurrency(api):
    for n in range(20):
        api.seqera[f"r{n}"] = "SUCCEEDED"
    statuses = lookup_statuses(seqera(api), [f"r{n}" for n in range(20)])
    assert len(statuses) == 20 and all(s.state == "finished" for s in statuses.values())
    assert len(api.requests) == 20


def test_no_source():
    assert NoSource().lookup("anything").state == "unknown"


DEEP = b"{\"workflow\": " + b"[" * 30_000 + b"]" * 30_000 + b"}"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"workflow": ["RUNNING"]}', "unexpected answer"),
        (b'{"workflow": {"status": ["SUCCEEDED"]}}', "unexpected answer"),
        (b'{"workflow": {"status": 7}}', "unexpected answer"),
        (b'["SUCCEEDED"]', "unexpected answer"),
        (b"not json at all", "unexpected answer"),
        (DEEP, "unexpected answer"),  # 60 kB of nesting: no RecursionError
        (b'{"workflow": {"status": "' + b"A" * 200_000 + b'"}}', "response larger than 64 KiB"),
    ],
    ids=["workflow-list", "status-list", "status-number", "top-list", "not-json", "deep", "huge"],
)
def test_seqera_malformed_answers_are_errors_not_crashes(api, body, detail):
    api.seqera["abc123"] = body
    got = seqera(api).lookup("abc123")
    assert (got.state, got.detail) == ("error", detail)


@pytest.mark.parametrize("body", [b'{"state": ["COMPLETE"]}', b'{"state": {"x": 1}}', b"[]", DEEP])
def test_tes_malformed_answers_are_errors_not_crashes(api, body):
    api.tes["t1"] = body
    assert tes(api).lookup("t1") == RunStatus("error", "unexpected answer")


def test_a_status_text_is_never_echoed(api):
    """An API that echoes the Authorization header in its status field leaks nothing."""
    api.seqera["abc123"] = f"Bearer {api.token}"
    status = seqera(api).lookup("abc123")
    assert status.state == "error" and api.token not in status.detail and "Bearer" not in status.detail


def test_seqera_workspaces_are_tried_in_turn(api):
    """403 in one workspace, 200 in the next: the run is found, and where is said."""
    api.seqera["w1"] = {"7": 403, "8": "SUCCEEDED"}
    source = SeqeraSource(url=api.seqera_url, token=api.token, workspace_ids=["7", "8"], timeout_seconds=2)
    status = source.lookup("w1")
    assert (status.state, status.detail, status.where) == ("finished", "SUCCEEDED", "workspace 8")
    assert [q.get("workspaceId") for _, q, _ in api.requests[-2:]] == [["7"], ["8"]]
    api.seqera["w2"] = {"7": 403, "8": 403}
    assert source.lookup("w2").state == "not-visible"
    api.seqera["w3"] = {"7": 403, "8": 500}
    assert (source.lookup("w3").state, source.lookup("w3").detail) == ("error", "HTTP 500")  # an outage is never "not visible"


def test_tes_error_state_carries_its_end_time(api):
    api.tes["t1"] = ("EXECUTOR_ERROR", "2026-11-20T10:00:00Z")
    status = tes(api).lookup("t1")
    assert status.may_retry and status.ended.isoformat() == "2026-11-20T10:00:00+00:00"
    api.tes["t2"] = ("SYSTEM_ERROR", "yesterday")
    assert tes(api).lookup("t2").ended is None
