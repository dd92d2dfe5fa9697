"""The operator's command line (#15): --user, ROTATOR_EXCLUDE_USERS, truthful summaries, clear errors."""

import json
import socket

import pytest
from freezegun import freeze_time

from helpers import HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator import cli
from rotator.names import iam_user_name
from rotator.runner import Runner
from rotator.settings import load_settings

U1, U2, U3 = (iam_user_name(HOST, n) for n in ("1", "2", "3"))
NOW = T0 + days(40)


@pytest.fixture
def three_expired(aws):
    iam = aws.client("iam")
    with freeze_time(T0):
        for user in (U1, U2, U3):
            make_user(iam, user, TAG)
            make_key(iam, user, created=T0)
    return iam


def run(aws, monkeypatch, users=None, **env):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with freeze_time(NOW):
        return Runner(load_settings(), aws=aws).run(["user-keys"], dry_run=False, users=users)


def test_user_limits_a_run_to_those_users(aws, monkeypatch, three_expired):
    result = run(aws, monkeypatch, users=[U2])
    assert [a.user for a in result.jobs[0].plan.actions] == [U2]
    assert key_ids(three_expired, U2) == set() and len(key_ids(three_expired, U1)) == 1


def test_excluded_users_are_never_touched_and_counted(aws, monkeypatch, three_expired):
    result = run(aws, monkeypatch, ROTATOR_EXCLUDE_USERS=json.dumps([U1, "3"]))  # an IAM name and a Gen3 id
    plan = result.jobs[0].plan
    assert [a.user for a in plan.actions] == [U2]
    assert sorted((s.name, s.reason) for s in plan.skipped) == [
        (U1, "excluded by ROTATOR_EXCLUDE_USERS"), (U3, "excluded by ROTATOR_EXCLUDE_USERS"),
    ]
    assert len(key_ids(three_expired, U1)) == 1 and len(key_ids(three_expired, U3)) == 1


def test_a_hostname_with_no_tagged_users_warns(aws, monkeypatch, three_expired, log_output):
    result = run(aws, monkeypatch, ROTATOR_HOSTNAME="typo.example.org")
    assert result.exit_code == 0
    assert "no users tagged name=gen3wf-typo-example-org (is ROTATOR_HOSTNAME right?)" in log_output.getvalue()


def test_jobs_not_run_because_another_was_refused_say_so(aws, monkeypatch, three_expired):
    from rotator.report import render_text

    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETIONS", "1")
    with freeze_time(NOW):
        result = Runner(load_settings(), aws=aws).run(["user-keys", "run-secrets"], dry_run=False)
    text = render_text(result, command="run")
    assert "user-keys: refused" in text
    assert "run-secrets: refused · not run (brake on user-keys)" in text
    assert result.exit_code == 3


def test_plan_apply_hints_run_apply(capsys):
    assert cli.main(["plan", "--apply"]) == 2
    assert "rotator run --apply" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ROTATOR_ALLOWED_ACCOUNT_IDS", "123456789012", """expected a JSON list of 12-digit strings, e.g. '["123456789012"]'"""),
        ("ROTATOR_ALLOWED_ACCOUNT_IDS", '["1234"]', "expected a JSON list of 12-digit strings"),
        ("ROTATOR_RUN_SECRETS__SEQERA__URL", "seqera.example.org", "expected an http(s) URL"),
    ],
)
def test_validation_errors_show_the_expected_form(monkeypatch, capsys, name, value, expected):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv(name, value)
    assert cli.main(["plan"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "^https?" not in err  # no regex shown


def test_a_busy_port_exits_2_with_one_line(aws, monkeypatch, capsys):
    from prometheus_client import CollectorRegistry

    from rotator.metrics import Metrics
    from rotator.serve import Service

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_METRICS__BIND_ADDRESS", "127.0.0.1")
    monkeypatch.setenv("ROTATOR_METRICS__PORT", str(busy.getsockname()[1]))
    try:
        code = Service(load_settings(), aws=aws, metrics=Metrics(CollectorRegistry())).serve()
    finally:
        busy.close()
    assert code == 2
    assert capsys.readouterr().err.count("rotator: cannot listen on 127.0.0.1") == 1


def test_config_shows_values_and_sources_with_secrets_masked(monkeypatch, capsys, tmp_path):
    config = tmp_path / "gen3-workflow-config.yaml"
    config.write_text(f"HOSTNAME: {HOST}\nIAM_KEYS_LIFETIME_DAYS: 14\nDB_PASSWORD: db-pa55word\n")
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(config))
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__TOKEN", "seqera-t0ken-value")
    monkeypatch.setenv("ROTATOR_DRY_RUN", "false")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any AWS call would fail loudly
    assert cli.main(["config", "--output", "json"]) == 0
    out = capsys.readouterr().out
    rows = {r["variable"]: (r["value"], r["source"]) for r in json.loads(out)["settings"]}
    assert rows["ROTATOR_DRY_RUN"] == ("false", "environment")
    assert rows["ROTATOR_HOSTNAME"] == (HOST, f"HOSTNAME in {config}")
    assert rows["ROTATOR_USER_KEYS__LIFETIME_DAYS"] == ("14", f"IAM_KEYS_LIFETIME_DAYS in {config}")
    assert rows["ROTATOR_BOT_KEYS__LIFETIME_DAYS"] == ("30", "default")
    assert rows["ROTATOR_RUN_SECRETS__SEQERA__TOKEN"] == ("******** (set)", "environment")
    assert "seqera-t0ken-value" not in out and "db-pa55word" not in out
    monkeypatch.setenv("ROTATOR_DRY_RUN", "maybe")
    assert cli.main(["config"]) == 2
