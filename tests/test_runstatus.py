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
    return SeqeraSource(url=api.seqera_url, token=token or api.token, workspace_id=workspace_id, timeout_seconds=timeout)


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
        (403, RunStatus("error", "HTTP 403")),
    ],
)
def test_seqera_states(api, answer, expected):
    api.seqera["abc123"] = answer
    assert seqera(api).lookup("abc123") == expected


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
        ("EXECUTOR_ERROR", RunStatus("finished", "EXECUTOR_ERROR")),
        ("SYSTEM_ERROR", RunStatus("finished", "SYSTEM_ERROR")),
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
    assert (path, query) == ("/ga4gh/tes/v1/tasks/task1", {"view": ["MINIMAL"]})
    assert tes(api, username="funnel", password="wrong").lookup("task1") == RunStatus("error", "HTTP 401")


@pytest.mark.parametrize("make", [seqera, tes])
def test_not_found_and_unauthorised(api, make):
    assert make(api).lookup("nosuchrun") == RunStatus("not-found", "HTTP 404")
    api.seqera["r1"] = api.tes["r1"] = "RUNNING"
    bad = seqera(api, token="wrong") if make is seqera else tes(api, token="wrong")
    assert bad.lookup("r1") == RunStatus("error", "HTTP 401")


@pytest.mark.parametrize("make", [seqera, tes])
def test_slow_answer_hits_the_timeout(api, make):
    api.seqera["slow"] = api.tes["slow"] = "SUCCEEDED" if make is seqera else "COMPLETE"
    api.delay["slow"] = 1.5
    assert make(api, timeout=0.3).lookup("slow") == RunStatus("error", "timeout")


def test_unreachable_api_is_an_error(api):
    url = api.seqera_url
    api.stop()
    status = SeqeraSource(url=url, token="t", workspace_id=None, timeout_seconds=1).lookup("r1")
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
    assert seqera(api).lookup("abc123") == RunStatus("error", detail)


@pytest.mark.parametrize("body", [b'{"state": ["COMPLETE"]}', b'{"state": {"x": 1}}', b"[]", DEEP])
def test_tes_malformed_answers_are_errors_not_crashes(api, body):
    api.tes["t1"] = body
    assert tes(api).lookup("t1") == RunStatus("error", "unexpected answer")


def test_a_status_text_is_never_echoed(api):
    """An API that echoes the Authorization header in its status field leaks nothing."""
    api.seqera["abc123"] = f"Bearer {api.token}"
    status = seqera(api).lookup("abc123")
    assert status.state == "error" and api.token not in status.detail and "Bearer" not in status.detail
