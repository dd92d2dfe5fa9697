"""Metrics on a fresh registry: truthful values, AWS calls from botocore hooks, promtool-clean."""

import subprocess

import pytest
from botocore.awsrequest import AWSResponse
from freezegun import freeze_time
from prometheus_client import CollectorRegistry, generate_latest

from conftest import require_binary
from helpers import HOST, T0, TAG, days, make_key, make_user
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.metrics import Metrics
from rotator.names import bot_user_name, iam_user_name
from rotator.runner import Runner
from rotator.settings import load_settings


@pytest.fixture
def metrics(aws):
    m = Metrics(CollectorRegistry())
    m.instrument(aws)
    yield m
    for event, _handler, uid in aws._hooks:
        for client in aws._clients.values():
            client.meta.events.unregister(event, unique_id=uid)
    aws._hooks.clear()


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def account(aws, settings):
    iam = aws.client("iam")
    store = SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix)
    for n in ("1", "2"):
        make_user(iam, iam_user_name(HOST, n), TAG)
    make_user(iam, bot_user_name(HOST, "1"), TAG)
    make_key(iam, iam_user_name(HOST, "1"), created=T0)  # expired at NOW
    make_key(iam, iam_user_name(HOST, "1"), created=T0 + days(8))  # 28d old at NOW: expires within 3 days
    make_key(iam, iam_user_name(HOST, "2"), created=T0 + days(35))
    make_key(iam, bot_user_name(HOST, "1"), created=T0 + days(30), store=store)
    return iam


NOW = "2026-02-06T00:00:00Z"  # T0 + 36d


@freeze_time(NOW)
def test_values_after_a_successful_run(aws, settings, metrics, account):
    result = Runner(settings, aws=aws).run(["user-keys", "bot-keys"], dry_run=False)
    metrics.record_run(result, settings=settings)
    assert value(metrics, "rotator_job_runs_total", job="user-keys", outcome="success") == 1
    assert value(metrics, "rotator_actions_total", job="user-keys", action="delete-key", outcome="done") == 1
    assert value(metrics, "rotator_actions_total", job="bot-keys", action="create-key", outcome="done") == 1
    assert value(metrics, "rotator_managed_users", kind="user") == 2
    assert value(metrics, "rotator_managed_users", kind="bot") == 1
    assert value(metrics, "rotator_access_keys", kind="user", state="live") == 2
    assert value(metrics, "rotator_access_keys", kind="user", state="expired") == 0
    assert value(metrics, "rotator_access_keys", kind="bot", state="live") == 2
    assert value(metrics, "rotator_access_keys_expiring", kind="user", within_days="3") == 1
    assert value(metrics, "rotator_access_keys_expiring", kind="user", within_days="1") == 0
    assert value(metrics, "rotator_access_key_oldest_age_seconds", kind="user") == days(28).total_seconds()
    assert value(metrics, "rotator_access_key_lifetime_seconds", kind="user") == days(30).total_seconds()
    assert value(metrics, "rotator_bot_users_unhealthy") == 0
    assert value(metrics, "rotator_job_last_success_timestamp_seconds", job="bot-keys") == result.now.timestamp()
    assert value(metrics, "rotator_build_info", version=__import__("rotator").__version__) == 1
    assert value(metrics, "rotator_aws_api_calls_total", service="iam", operation="DeleteAccessKey", outcome="success") == 1
    assert value(metrics, "rotator_aws_api_calls_total", service="sts", operation="GetCallerIdentity", outcome="success") == 2  # the identity, and the new bot key proving itself


@freeze_time(NOW)
def test_a_failed_deletion_is_counted_as_failed(aws, settings, metrics, account, fault):
    fault("iam", "DeleteAccessKey", "ServiceFailure")
    fault("secretsmanager", "PutSecretValue", "InternalServiceError")
    result = Runner(settings, aws=aws).run(["user-keys", "bot-keys"], dry_run=False)
    metrics.record_run(result, settings=settings)
    assert value(metrics, "rotator_job_runs_total", job="user-keys", outcome="failed") == 1
    assert value(metrics, "rotator_actions_total", job="user-keys", action="delete-key", outcome="failed") == 1
    assert value(metrics, "rotator_actions_total", job="user-keys", action="delete-key", outcome="done") is None
    assert value(metrics, "rotator_access_keys", kind="user", state="expired") == 1  # still there, and it shows
    assert value(metrics, "rotator_bot_users_unhealthy") == 1
    assert value(metrics, "rotator_job_last_success_timestamp_seconds", job="user-keys") is None
    assert value(metrics, "rotator_job_last_outcome", job="user-keys", outcome="failed") == 1
    assert value(metrics, "rotator_job_last_outcome", job="user-keys", outcome="success") == 0


@freeze_time(NOW)
def test_brake_trip_is_counted(aws, settings, metrics, account, monkeypatch):
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETIONS", "0")
    settings = load_settings()
    metrics.record_run(Runner(settings, aws=aws).run(["user-keys"], dry_run=False), settings=settings)
    assert value(metrics, "rotator_safety_brake_trips_total", job="user-keys") == 1
    assert value(metrics, "rotator_job_runs_total", job="user-keys", outcome="refused") == 1


def test_throttles_counted_from_botocore_attempts(_moto):
    # Its own client: a throttle switches on botocore's adaptive rate limiter, whose token
    # bucket would then wait forever in tests that move the clock backwards.
    import boto3

    from rotator.aws import Aws

    aws = Aws(boto3.session.Session(region_name="us-east-1"))
    metrics = Metrics(CollectorRegistry())
    metrics.instrument(aws)
    iam = aws.client("iam")
    answers = [429, 200]

    def throttle_once(request, **kwargs):
        if answers.pop(0) == 429:
            body = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
            return AWSResponse(request.url, 400, {}, _Raw(body))
        return None

    iam.meta.events.register_first("before-send.iam.ListUsers", throttle_once, unique_id="throttle-once")
    try:
        iam.list_users()
    finally:
        iam.meta.events.unregister("before-send.iam.ListUsers", unique_id="throttle-once")
    assert value(metrics, "rotator_aws_api_throttles_total", service="iam", operation="ListUsers") == 1
    assert value(metrics, "rotator_aws_api_calls_total", service="iam", operation="ListUsers", outcome="success") == 1


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **kwargs):
        yield self._body


@freeze_time(NOW)
def test_exposition_passes_promtool(aws, settings, metrics, account):
    promtool = require_binary("promtool")
    metrics.record_run(Runner(settings, aws=aws).run(["user-keys", "bot-keys"], dry_run=True), settings=settings)
    exposition = generate_latest(metrics.registry)
    proc = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"rotator_job_runs_total" in exposition


@freeze_time(NOW)
def test_no_secret_in_exposition(aws, settings, metrics, account):
    metrics.record_run(Runner(settings, aws=aws).run(["user-keys", "bot-keys"], dry_run=False), settings=settings)
    exposition = generate_latest(metrics.registry).decode()
    assert "AKIA" not in exposition and HOST not in exposition and "gen3wf-" not in exposition
