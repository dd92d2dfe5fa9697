"""rotator serve: the scheduler through its triggers and job functions; HTTP endpoints."""

import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from helpers import HOST, T0, TAG, make_key, make_user
from rotator.metrics import Metrics
from rotator.names import iam_user_name
from rotator.serve import Service
from rotator.settings import AccountNotAllowed, load_settings


@pytest.fixture
def service(aws, monkeypatch):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_DRY_RUN", "false")
    monkeypatch.setenv("ROTATOR_SCHEDULE__RUN_SECRETS", "")
    svc = Service(load_settings(), aws=aws, metrics=Metrics(CollectorRegistry()))
    yield svc
    if svc.scheduler.running:
        svc.scheduler.shutdown(wait=False)
    svc._stop_http()
    for event, _h, uid in aws._hooks:
        for client in aws._clients.values():
            client.meta.events.unregister(event, unique_id=uid)
    aws._hooks.clear()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_one_schedule_per_enabled_job(service):
    service.schedule_jobs()
    jobs = {j.id: j for j in service.scheduler.get_jobs()}
    assert set(jobs) == {"user-keys", "bot-keys"}  # run-secrets disabled by its empty schedule
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    fire = jobs["bot-keys"].trigger.get_next_fire_time(None, now)
    assert datetime(2026, 11, 23, 3, 10, tzinfo=UTC) <= fire <= datetime(2026, 11, 23, 3, 11, tzinfo=UTC)  # 60 s jitter
    assert service.scheduler._job_defaults == {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}


def test_run_job_applies_and_records(service, aws):
    iam = aws.client("iam")
    make_user(iam, iam_user_name(HOST, "1"), TAG)
    make_key(iam, iam_user_name(HOST, "1"), created=T0)  # long expired
    service.run_job("user-keys")
    registry = service.metrics.registry
    assert registry.get_sample_value("rotator_job_runs_total", {"job": "user-keys", "outcome": "success"}) == 1
    assert registry.get_sample_value("rotator_actions_total", {"job": "user-keys", "action": "delete-key", "outcome": "done"}) == 1
    assert iam.list_access_keys(UserName=iam_user_name(HOST, "1"))["AccessKeyMetadata"] == []


def test_a_failing_job_never_raises(service, fault, log_output):
    fault("iam", "GetAccountAuthorizationDetails", "AccessDenied")
    service.run_job("user-keys")
    service.run_job("user-keys")
    assert service.metrics.registry.get_sample_value("rotator_job_runs_total", {"job": "user-keys", "outcome": "error"}) == 2
    assert "job.inventory_failed" in log_output.getvalue()


def test_a_job_never_runs_twice_at_once(service, log_output):
    service._job_locks["bot-keys"].acquire()  # a run in progress
    try:
        service.run_job("bot-keys")
    finally:
        service._job_locks["bot-keys"].release()
    assert "the previous run is still going" in log_output.getvalue()
    assert service.metrics.registry.get_sample_value("rotator_job_runs_total", {"job": "bot-keys", "outcome": "success"}) is None


def test_http_endpoints(service):
    port = service.start_http(port=0, host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    assert get(base + "/readyz")[0] == 503
    assert get(base + "/healthz")[0] == 503  # no scheduler yet
    service.scheduler.start()
    # Alive while the identity is not established yet: liveness must not restart a pod waiting for AWS.
    assert get(base + "/healthz") == (200, "ok\n")
    assert get(base + "/readyz")[0] == 503
    service.establish_identity()
    assert get(base + "/readyz") == (200, "ready\n")
    assert get(base + "/healthz") == (200, "ok\n")
    status, body = get(base + "/metrics")
    assert status == 200 and 'rotator_build_info{version="' in body
    assert "rotator_aws_api_calls_total" in body  # the identity check was counted
    assert get(base + "/nope")[0] == 404


def test_wrong_account_is_final(aws, monkeypatch):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_ALLOWED_ACCOUNT_IDS", '["111122223333"]')
    svc = Service(load_settings(), aws=aws, metrics=Metrics(CollectorRegistry()))
    with pytest.raises(AccountNotAllowed):
        svc.establish_identity()
    assert not svc.ready.is_set()


def test_jobs_can_run_at_the_same_time(service, aws):
    """serve runs different jobs concurrently (run_on_start, long jobs): they must not share run state."""
    import threading

    iam = aws.client("iam")
    for n in range(5):
        make_user(iam, iam_user_name(HOST, str(n)), TAG)
        make_key(iam, iam_user_name(HOST, str(n)), created=T0)
    aws.client("secretsmanager").create_secret(Name="tower-abc/TOKEN", SecretString="v")
    service._job_locks["run-secrets"] = threading.Lock()
    threads = [threading.Thread(target=service.run_job, args=[job]) for job in ("user-keys", "bot-keys", "run-secrets")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    registry = service.metrics.registry
    for job in ("user-keys", "bot-keys", "run-secrets"):
        assert registry.get_sample_value("rotator_job_runs_total", {"job": job, "outcome": "success"}) == 1, job
