"""moto + freezegun integration of both key jobs through the runner."""

import json

import pytest
import structlog
from freezegun import freeze_time

from helpers import HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator.names import bot_user_name, iam_user_name, owner_tag_value
from rotator.runner import Runner
from rotator.settings import ConfigError, load_settings

U1 = iam_user_name(HOST, "1")
U2 = iam_user_name(HOST, "2")
B0, B1, B2, BX, BO = (bot_user_name(HOST, n) for n in ("10", "11", "12", "13", "14"))
DECOY_OTHER_HOST = iam_user_name("other.example.org", "1")
DECOY_UNTAGGED = iam_user_name(HOST, "999")
DECOY_UNRELATED = "ci-deployer"
DECOY_BOT_OTHER_HOST = bot_user_name("other.example.org", "1")


@pytest.fixture
def deployment(aws, store):
    """Users and keys made at T0 and later, and decoys with long-expired keys."""
    iam = aws.client("iam")
    for name in (U1, U2, B0, B1, B2, BX, BO):
        make_user(iam, name, TAG)
    make_user(iam, DECOY_OTHER_HOST, owner_tag_value("other.example.org"))
    make_user(iam, DECOY_BOT_OTHER_HOST, owner_tag_value("other.example.org"))
    make_user(iam, DECOY_UNTAGGED, None)
    make_user(iam, DECOY_UNRELATED, None)
    seeded = {
        "u1_old": make_key(iam, U1, created=T0),
        "u1_new": make_key(iam, U1, created=T0 + days(20)),
        "u2_inactive": make_key(iam, U2, created=T0 + days(25), active=False),
        "b1": make_key(iam, B1, created=T0 + days(20), store=store),
        "b2_a": make_key(iam, B2, created=T0 + days(10), store=store),
        "b2_b": make_key(iam, B2, created=T0 + days(10), store=store),
        "bx_old": make_key(iam, BX, created=T0, store=store),
        "bx_new": make_key(iam, BX, created=T0 + days(25), store=store),
        "bo_good": make_key(iam, BO, created=T0 + days(25), store=store),
        "bo_orphan": make_key(iam, BO, created=T0 + days(30)),
    }
    decoys = {}
    for name in (DECOY_OTHER_HOST, DECOY_BOT_OTHER_HOST, DECOY_UNTAGGED, DECOY_UNRELATED):
        decoys[name] = make_key(iam, name, created=T0 - days(400)).key_id
    return seeded, decoys




def run(aws, settings, *, apply=True, jobs=("user-keys", "bot-keys")):
    return Runner(settings, aws=aws).run(list(jobs), dry_run=not apply)


@freeze_time("2026-02-01T12:00:00Z")
def test_both_jobs_end_to_end(aws, settings, store, deployment):
    seeded, decoys = deployment
    iam = aws.client("iam")

    result = run(aws, settings)
    assert result.exit_code == 0
    user_actions = {(a.kind, a.target, a.reason) for a in result.jobs[0].plan.actions}
    assert user_actions == {
        ("delete-key", f"{U1}/{seeded['u1_old'].key_id}", "expired: 31d > 30d"),
        ("delete-key", f"{U2}/{seeded['u2_inactive'].key_id}", "inactive"),
    }
    assert key_ids(iam, U1) == {seeded["u1_new"].key_id}
    assert key_ids(iam, U2) == set()

    # every bot user ends with two live keys, all stored, the newest first in the store
    for bot in (B0, B1, B2, BX, BO):
        ids = key_ids(iam, bot)
        assert len(ids) == 2, bot
        value = json.loads(aws.client("secretsmanager").get_secret_value(SecretId=settings.bot_secret_prefix + bot, VersionStage="AWSCURRENT")["SecretString"])
        assert {e["access_key_id"] for e in value} == ids
        listed = iam.list_access_keys(UserName=bot)["AccessKeyMetadata"]
        newest = max(k["CreateDate"] for k in listed)
        assert value[0]["access_key_id"] in {k["AccessKeyId"] for k in listed if k["CreateDate"] == newest}
        assert value[0]["secret_access_key"]
    assert seeded["bx_old"].key_id not in key_ids(iam, BX)  # expired
    assert seeded["bo_orphan"].key_id not in key_ids(iam, BO)  # orphan
    assert len(key_ids(iam, B2) & {seeded["b2_a"].key_id, seeded["b2_b"].key_id}) == 1  # rotated: staggered now
    assert seeded["b1"].key_id in key_ids(iam, B1)

    # decoys untouched
    for name, key_id in decoys.items():
        assert key_ids(iam, name) == {key_id}, name
    secrets = [s["Name"] for s in aws.client("secretsmanager").list_secrets()["SecretList"]]
    assert not any("other" in s or "999" in s or "ci-deployer" in s for s in secrets)

    # a second run plans nothing
    again = run(aws, settings)
    assert [a for j in again.jobs for a in j.plan.actions] == []
    assert again.exit_code == 0


@freeze_time("2026-02-01T12:00:00Z")
def test_dry_run_changes_nothing(aws, settings, deployment):
    iam = aws.client("iam")
    before = {u: key_ids(iam, u) for u in (U1, U2, B0, B1, B2, BX, BO)}
    secrets_before = aws.client("secretsmanager").list_secrets()["SecretList"]
    result = run(aws, settings, apply=False)
    assert result.exit_code == 0
    assert all(o.result == "dry-run" for j in result.jobs for o in j.outcomes)
    assert sum(len(j.outcomes) for j in result.jobs) > 5
    assert before == {u: key_ids(iam, u) for u in before}
    assert [s["Description"] for s in aws.client("secretsmanager").list_secrets()["SecretList"]] == [
        s["Description"] for s in secrets_before
    ]


@freeze_time("2026-02-01T12:00:00Z")
def test_store_failure_leaves_no_extra_key(aws, settings, deployment, fault, log_output):
    iam = aws.client("iam")
    fault("secretsmanager", "CreateSecret", "InternalServiceError")
    fault("secretsmanager", "PutSecretValue", "InternalServiceError")
    before = {u: key_ids(iam, u) for u in (B0, B1)}
    result = run(aws, settings, jobs=["bot-keys"])
    assert result.exit_code == 1
    assert key_ids(iam, B0) == set()  # created, not storable, deleted again
    assert key_ids(iam, B1) == before[B1]
    failed = [o for o in result.jobs[0].outcomes if o.result == "failed"]
    assert failed and all("store" in o.error for o in failed)
    assert "key.rolled_back" in log_output.getvalue()


@freeze_time("2026-02-01T12:00:00Z")
def test_credential_report_unavailable_falls_back(aws, settings, deployment, fault, log_output):
    fault("iam", "GenerateCredentialReport", "AccessDenied")
    result = run(aws, settings, apply=False)
    assert result.exit_code == 0
    assert result.jobs[0].plan.inventory_source == "list-access-keys"
    assert len(result.jobs[0].plan.actions) == 2
    assert len(result.jobs[1].plan.actions) > 0
    events = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert any(e["event"] == "inventory.credential_report_unavailable" and "AccessDenied" in e["error"] for e in events)
    # one run id on every event of the run: the audit trail of one invocation
    run_events = [e for e in events if e.get("run_id")]
    assert len(run_events) == len(events) and len({e["run_id"] for e in events}) == 1
    assert {e["hostname"] for e in events} == {HOST}
    # and, from the moment the identity is known (its own GetCallerIdentity call comes before), the account
    after_identity = [e for e in events if not (e["event"] == "aws.call" and e["operation"] == "GetCallerIdentity")]
    assert {e.get("account") for e in after_identity} == {"123456789012"}
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks past the run


@freeze_time("2026-02-01T12:00:00Z")
def test_max_deletions_brake_refuses_everything(aws, settings, deployment, monkeypatch, log_output):
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETIONS", "1")
    settings = load_settings()
    iam = aws.client("iam")
    before = {u: key_ids(iam, u) for u in (U1, U2, B0, BX)}
    result = run(aws, settings)
    assert result.exit_code == 3
    assert result.jobs[0].brake.limit == "max_deletions"
    assert before == {u: key_ids(iam, u) for u in before}
    assert all(not j.outcomes for j in result.jobs)  # nothing executed, not even the job within limits
    assert "ROTATOR_SAFETY__MAX_DELETIONS" in log_output.getvalue()


@freeze_time("2026-03-15T00:00:00Z")
def test_fraction_brake(aws, settings, monkeypatch):
    iam = aws.client("iam")
    for n in range(25):
        make_user(iam, iam_user_name(HOST, str(n)), TAG)
        make_key(iam, iam_user_name(HOST, str(n)), created=T0 if n < 13 else T0 + days(60))
    result = run(aws, settings, jobs=["user-keys"])
    assert result.exit_code == 3
    assert result.jobs[0].brake.limit == "max_deletion_fraction"
    assert "13 of 25" in result.jobs[0].brake.message
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETION_FRACTION", "0.6")
    assert run(aws, load_settings(), jobs=["user-keys"]).exit_code == 0


def test_account_not_allowed(aws, monkeypatch):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_ALLOWED_ACCOUNT_IDS", '["999999999999"]')
    with pytest.raises(ConfigError, match="123456789012 is not in ROTATOR_ALLOWED_ACCOUNT_IDS"):
        run(aws, load_settings())
    monkeypatch.setenv("ROTATOR_ALLOWED_ACCOUNT_IDS", '["999999999999", "123456789012"]')
    assert run(aws, load_settings()).exit_code == 0


@freeze_time("2026-02-01T12:00:00Z")
def test_no_secret_in_logs_or_results(aws, settings, deployment, log_output):
    from rotator.report import render_json, render_text

    seeded, _ = deployment
    result = run(aws, settings)
    sm = aws.client("secretsmanager")
    secrets = {k.secret for k in seeded.values()}
    for s in sm.list_secrets()["SecretList"]:
        secrets |= {e["secret_access_key"] for e in json.loads(sm.get_secret_value(SecretId=s["ARN"], VersionStage="AWSCURRENT")["SecretString"])}
    assert len(secrets) > 10
    text = log_output.getvalue() + render_json(result, command="run") + render_text(result, command="run") + repr(result)
    assert "key.created" in text
    for secret in secrets:
        assert secret not in text


def test_outcome_events_follow_the_plan_whatever_order_the_work_finishes_in(aws, settings, hooks, monkeypatch, log_output):
    """Per-user work runs in parallel; its audit events are still logged in plan order."""
    import time

    monkeypatch.setenv("ROTATOR_AWS__CONCURRENCY", "4")
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETION_FRACTION", "1")
    iam = aws.client("iam")
    users = [iam_user_name(HOST, str(n)) for n in range(6)]
    for name in users:
        make_user(iam, name, TAG)
        make_key(iam, name, created=T0)
    first = users[0]

    def slow_first_user(params, **_):
        if params.get("UserName") == first:
            time.sleep(0.5)  # the plan's first deletion finishes last

    hooks("iam", "before-call.iam.DeleteAccessKey", slow_first_user)
    with freeze_time(T0 + days(40)):
        result = Runner(load_settings(), aws=aws).run(["user-keys"], dry_run=False)
    assert result.exit_code == 0
    planned = [a.user for a in result.jobs[0].plan.actions]
    assert planned[0] == first
    logged = [e["target"].split("/")[0] for e in map(json.loads, log_output.getvalue().splitlines()) if e["event"] == "key.deleted"]
    assert logged == planned
