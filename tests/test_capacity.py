"""The account's IAM user quota: gauges, the warning at the configured fraction (not below), advisory on failure."""

import json

import pytest
from prometheus_client import CollectorRegistry

from helpers import HOST, TAG, make_user
from rotator.capacity import UserQuota
from rotator.metrics import Metrics
from rotator.names import bot_user_name, iam_user_name
from rotator.report import render_json, render_text
from rotator.runner import Runner
from rotator.settings import load_settings


@pytest.fixture
def ten_users(aws):
    iam = aws.client("iam")
    for n in range(5):
        make_user(iam, iam_user_name(HOST, str(n)), TAG)
        make_user(iam, bot_user_name(HOST, str(n)), TAG)


def run(aws, monkeypatch, warn_fraction):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_CAPACITY__WARN_FRACTION", str(warn_fraction))
    settings = load_settings()
    return settings, Runner(settings, aws=aws).run(["user-keys"], dry_run=True)


def test_gauges_and_summary_line(aws, monkeypatch, ten_users):
    settings, result = run(aws, monkeypatch, 0.8)
    assert result.user_quota == UserQuota(users=10, quota=5000)
    metrics = Metrics(CollectorRegistry())
    metrics.record_run(result, settings=settings)
    assert metrics.registry.get_sample_value("rotator_iam_users") == 10
    assert metrics.registry.get_sample_value("rotator_iam_users_quota") == 5000
    assert "IAM users: 10 of 5,000 (0 %): room for about 2,495 more workflow users" in render_text(result, command="plan")
    assert json.loads(render_json(result, command="plan"))["iam_users"] == {"users": 10, "quota": 5000, "room_for_workflow_users": 2495}


def test_warns_at_the_fraction_and_not_below(aws, monkeypatch, ten_users, log_output):
    run(aws, monkeypatch, 10 / 5000)  # exactly at the threshold
    events = [json.loads(line) for line in log_output.getvalue().splitlines()]
    warning = [e for e in events if e["event"] == "account.user_quota"]
    assert len(warning) == 1 and warning[0]["users"] == 10 and warning[0]["quota"] == 5000 and warning[0]["fraction"] == 0.002
    log_output.truncate(0)
    log_output.seek(0)
    run(aws, monkeypatch, 11 / 5000)  # just above the account's fraction: silent
    assert "account.user_quota" not in log_output.getvalue()


def test_the_summary_wording_near_the_quota():
    quota = UserQuota(users=4212, quota=5000)
    assert quota.summary() == "IAM users: 4,212 of 5,000 (84 %): room for about 394 more workflow users"
    assert UserQuota(users=5001, quota=5000).room_for_workflow_users == 0


def test_access_denied_is_one_warning_and_changes_no_exit_code(aws, monkeypatch, fault, log_output):
    fault("iam", "GetAccountSummary", "AccessDenied")
    _, result = run(aws, monkeypatch, 0.8)
    assert result.exit_code == 0 and result.user_quota is None
    assert "account.user_quota_unavailable" in log_output.getvalue()
    assert "IAM users:" not in render_text(result, command="plan")
