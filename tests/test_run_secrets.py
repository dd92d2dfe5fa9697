"""moto + freezegun integration of the run-secrets job, and restore-secrets."""

import json
from datetime import date

import pytest
from freezegun import freeze_time

from fake_status_api import FakeStatusApi
from helpers import T0, days
from rotator.jobs.run_secrets import DELETED_FOR_RUN_TAG
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import NewKey
from rotator.restore import restore_secrets
from rotator.runner import Runner
from rotator.settings import load_settings

NOW = T0 + days(40)
DECOYS = ("prod/db-password", "towerfoo/BAR", "Tower-abc/TOKEN")


# TES task ids are not Seqera workflow ids: TES needs its own pattern.
TES_PATTERN = r"^tes-(?P<run_id>[A-Za-z0-9-]{1,64})/[A-Za-z_][A-Za-z0-9_]*$"


@pytest.fixture
def api():
    fake = FakeStatusApi().start()
    yield fake
    fake.stop()


@pytest.fixture
def configure(monkeypatch, api):
    def apply(source="seqera", **extra):
        monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
        monkeypatch.setenv("ROTATOR_RUN_SECRETS__STATUS_SOURCE", source)
        if source == "seqera":
            monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__URL", api.seqera_url)
            monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__TOKEN", api.token)
        if source == "tes":
            monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__URL", api.tes_url)
            monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__TOKEN", api.token)
            monkeypatch.setenv("ROTATOR_RUN_SECRETS__PATTERNS", json.dumps([TES_PATTERN]))
        for name, value in extra.items():
            monkeypatch.setenv(f"ROTATOR_RUN_SECRETS__{name.upper()}", value)
        return load_settings()

    return apply


def create(sm, name, *, at=T0, **kw):
    with freeze_time(at):
        return sm.create_secret(Name=name, SecretString="value-" + name, **kw)["ARN"]


def run(aws, settings, apply=True, now=NOW):
    return Runner(settings, aws=aws, clock=lambda: now).run(["run-secrets"], dry_run=not apply)


def describe(sm, name):
    return sm.describe_secret(SecretId=name)


@pytest.fixture
def secrets(aws, api):
    sm = aws.client("secretsmanager")
    api.seqera.update(done1="SUCCEEDED", run1="RUNNING", err1=500, young="SUCCEEDED", pend1="SUCCEEDED")
    for name in ("tower-done1/TOKEN", "tower-done1/AWS_KEY", "tower-run1/TOKEN", "tower-gone1/TOKEN", "tower-err1/TOKEN",
                 "tower-bad-name/X", "tower-pend1/TOKEN", *DECOYS):
        create(sm, name)
    create(sm, "tower-gone2/TOKEN", at=NOW - days(10))
    create(sm, "tower-young/TOKEN", at=NOW - days(0.01))
    sm.delete_secret(SecretId="tower-pend1/TOKEN", RecoveryWindowInDays=30)
    store = SecretsManagerStore(sm, prefix="gen3wf-rotator/gen3.example.org/bot-keys/")
    with freeze_time(T0):
        store.add(NewKey("gen3wf-gen3-example-org-1-bot", "AKIA1", T0, "bot-secret"))
    return sm


def test_seqera_end_to_end(aws, api, configure, secrets):
    sm = secrets
    result = run(aws, configure())
    job = result.jobs[0]
    assert {a.target: a.reason for a in job.plan.actions} == {
        "tower-done1/AWS_KEY": "run done1 SUCCEEDED (seqera) in us-east-1",
        "tower-done1/TOKEN": "run done1 SUCCEEDED (seqera) in us-east-1",
        "tower-gone1/TOKEN": "run gone1 not known finished (not visible: 404; seqera), secret 40d > 30d in us-east-1",
    }
    assert job.plan.states == {"finished": 2, "active": 1, "expired": 1, "not-visible": 1, "error": 1,
                               "too-young": 1, "malformed": 1, "pending-deletion": 1}
    assert [s.name for s in job.plan.skipped] == ["tower-bad-name/X"]
    assert result.exit_code == 1  # the err1 lookup failed: counted, loud
    assert all(o.result == "done" for o in job.outcomes)

    for name in ("tower-done1/TOKEN", "tower-done1/AWS_KEY", "tower-gone1/TOKEN"):
        d = describe(sm, name)
        assert "DeletedDate" in d
        assert {"Key": DELETED_FOR_RUN_TAG, "Value": name.split("/")[0][6:]} in d["Tags"]
    # the recovery window: moto reports the date the secret will be gone
    assert (describe(sm, "tower-done1/TOKEN")["DeletedDate"].date() - date.today()).days == 7
    for name in ("tower-run1/TOKEN", "tower-gone2/TOKEN", "tower-err1/TOKEN", "tower-young/TOKEN", "tower-bad-name/X", *DECOYS):
        assert "DeletedDate" not in describe(sm, name), name
    assert "DeletedDate" not in describe(sm, "gen3wf-rotator/gen3.example.org/bot-keys/gen3wf-gen3-example-org-1-bot")
    # the pending one was not touched (no tag added)
    assert not any(t["Key"] == DELETED_FOR_RUN_TAG for t in describe(sm, "tower-pend1/TOKEN").get("Tags", []))

    # one lookup per run, plus one re-check per run before deleting its secrets
    paths = [p for p, _, _ in api.requests]
    assert paths.count("/api/workflow/done1") == 2
    assert "/api/workflow/young" not in paths  # too young: never looked up

    # restore brings them back
    restored = restore_secrets(sm, run_ids={"done1"})
    assert [(r.name, r.outcome) for r in restored] == [("tower-done1/AWS_KEY", "restored"), ("tower-done1/TOKEN", "restored")]
    assert "DeletedDate" not in describe(sm, "tower-done1/TOKEN")
    assert not any(t["Key"] == DELETED_FOR_RUN_TAG for t in describe(sm, "tower-done1/TOKEN").get("Tags", []))
    assert sm.get_secret_value(SecretId="tower-done1/TOKEN")["SecretString"] == "value-tower-done1/TOKEN"
    assert "DeletedDate" in describe(sm, "tower-gone1/TOKEN")
    assert [r.name for r in restore_secrets(sm, run_ids=None)] == ["tower-gone1/TOKEN"]
    assert "DeletedDate" in describe(sm, "tower-pend1/TOKEN")  # not ours to restore


def test_tes_source(aws, api, configure):
    """Error states are final only once the task ended ERROR_GRACE_MINUTES ago (Funnel may retry them)."""
    sm = aws.client("secretsmanager")
    ended = lambda ago: (NOW - ago).isoformat().replace("+00:00", "Z")  # noqa: E731
    api.tes.update(
        t1="COMPLETE", t2="EXECUTOR_ERROR", t3="RUNNING", t4="PREEMPTED",
        t5=("EXECUTOR_ERROR", ended(days(1))), t6=("SYSTEM_ERROR", ended(days(0.1))), t7=("QUEUED", ended(days(1))),
    )
    for run_id in ("t1", "t2", "t3", "t4", "t5", "t6", "t7"):
        create(sm, f"tes-{run_id}/SECRET", at=NOW - days(2))
    result = run(aws, configure("tes"))
    assert result.exit_code == 0
    plan = result.jobs[0].plan
    assert sorted(a.target for a in plan.actions) == ["tes-t1/SECRET", "tes-t5/SECRET"]
    assert next(a for a in plan.actions if a.target == "tes-t5/SECRET").reason == (
        "run t5 EXECUTOR_ERROR, ended 1d ago >= 360m (tes) in us-east-1"
    )
    # t2: an error state without an end time is not known finished; t6: ended 2.4 h ago, may be retried
    assert plan.states == {"finished": 2, "unknown": 1, "active": 4}


def test_no_source_age_only(aws, configure):
    sm = aws.client("secretsmanager")
    create(sm, "tower-old/X")
    create(sm, "tower-new/X", at=NOW - days(3))
    result = run(aws, configure("none"))
    assert [a.target for a in result.jobs[0].plan.actions] == ["tower-old/X"]
    assert result.jobs[0].plan.actions[0].reason == "run old not known finished (no status source), secret 40d > 30d in us-east-1"


def test_status_api_outage_deletes_nothing(aws, api, configure, secrets):
    api.stop()
    result = run(aws, configure())
    job = result.jobs[0]
    assert job.plan.actions == ()
    assert result.exit_code == 1
    assert job.plan.states["error"] == 6
    assert not any("DeletedDate" in describe(secrets, n) for n in ("tower-done1/TOKEN", "tower-gone1/TOKEN"))


def test_status_rechecked_just_before_deletion(aws, api, configure):
    sm = aws.client("secretsmanager")
    create(sm, "tower-flip/TOKEN")
    api.seqera["flip"] = ["FAILED", "RUNNING"]  # e.g. resumed after the plan was made
    result = run(aws, configure())
    [outcome] = result.jobs[0].outcomes
    assert outcome.result == "skipped"
    assert "now active (RUNNING)" in outcome.error
    assert "DeletedDate" not in describe(sm, "tower-flip/TOKEN")


def test_dry_run_deletes_nothing(aws, api, configure, secrets):
    result = run(aws, configure(), apply=False)
    assert {o.result for o in result.jobs[0].outcomes} == {"dry-run"}
    assert "DeletedDate" not in describe(secrets, "tower-done1/TOKEN")


def test_replicated_secrets(aws, api, configure):
    sm = aws.client("secretsmanager")
    create(sm, "tower-rep/TOKEN", AddReplicaRegions=[{"Region": "us-west-2"}])
    api.seqera["rep"] = "SUCCEEDED"
    result = run(aws, configure())
    assert result.jobs[0].plan.actions == ()
    assert result.jobs[0].plan.states == {"replicated": 1}
    result = run(aws, configure(remove_replicas="true"))
    assert [o.result for o in result.jobs[0].outcomes] == ["done"]
    assert "DeletedDate" in describe(sm, "tower-rep/TOKEN")
    assert not describe(sm, "tower-rep/TOKEN").get("ReplicationStatus")


def test_without_recovery_window(aws, api, configure):
    sm = aws.client("secretsmanager")
    create(sm, "tower-done9/TOKEN")
    api.seqera["done9"] = "SUCCEEDED"
    run(aws, configure(recovery_window_days="0"))
    assert sm.list_secrets(IncludePlannedDeletion=True)["SecretList"] == []


def test_bot_key_store_never_matches(aws, configure):
    sm = aws.client("secretsmanager")
    store = SecretsManagerStore(sm, prefix="gen3wf-rotator/gen3.example.org/bot-keys/")
    with freeze_time(T0):
        store.add(NewKey("gen3wf-gen3-example-org-1-bot", "AKIA1", T0, "bot-secret"))
    create(sm, "anything-else")
    settings = configure("none", patterns=json.dumps(["^(?P<run_id>.+)$"]))  # as broad as it gets
    result = run(aws, settings)
    assert [a.target for a in result.jobs[0].plan.actions] == ["anything-else"]
    assert result.jobs[0].plan.managed == 1


def test_brake_applies(aws, api, configure, monkeypatch):
    sm = aws.client("secretsmanager")
    for n in range(3):
        create(sm, f"tower-b{n}/TOKEN")
        api.seqera[f"b{n}"] = "SUCCEEDED"
    result = run(aws, configure())
    assert result.exit_code == 0 and len(result.jobs[0].outcomes) == 3
    for n in range(3, 6):
        create(sm, f"tower-b{n}/TOKEN")
        api.seqera[f"b{n}"] = "SUCCEEDED"
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETIONS", "2")
    refused = run(aws, configure())
    assert refused.exit_code == 3
    assert refused.jobs[0].brake.limit == "max_deletions"
    assert not any("DeletedDate" in describe(sm, f"tower-b{n}/TOKEN") for n in range(3, 6))


def test_token_from_a_file_is_read_at_each_run(aws, api, monkeypatch, tmp_path):
    sm = aws.client("secretsmanager")
    create(sm, "tower-tf1/TOKEN")
    api.seqera["tf1"] = "RUNNING"
    token_file = tmp_path / "token"
    token_file.write_text("stale-token\n")
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__STATUS_SOURCE", "seqera")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__URL", api.seqera_url)
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE", str(token_file))
    settings = load_settings()
    runner = Runner(settings, aws=aws, clock=lambda: NOW)
    assert runner.run(["run-secrets"], dry_run=True).jobs[0].plan.states == {"error": 1}  # 401 with the stale token
    token_file.write_text(api.token + "\n")  # the mounted Secret was rotated
    assert runner.run(["run-secrets"], dry_run=True).jobs[0].plan.states == {"active": 1}
    assert api.requests[-1][2]["Authorization"] == f"Bearer {api.token}"


def test_missing_token_file_is_a_config_error(monkeypatch, tmp_path):
    from rotator.settings import ConfigError

    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__STATUS_SOURCE", "tes")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__URL", "https://tes.example.org/ga4gh/tes/v1")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__TOKEN_FILE", str(tmp_path / "absent"))
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__PATTERNS", json.dumps([TES_PATTERN]))
    with pytest.raises(ConfigError, match="ROTATOR_RUN_SECRETS__TES__TOKEN_FILE"):
        load_settings()


def test_every_workspace_is_tried_and_a_run_none_can_see_is_not_an_error(aws, api, configure, monkeypatch):
    sm = aws.client("secretsmanager")
    api.seqera.update(ws8={"7": 403, "8": "SUCCEEDED"}, hidden={"7": 403, "8": 403}, hiddenold={"7": 403, "8": 404})
    create(sm, "tower-ws8/TOKEN", at=NOW - days(2))
    create(sm, "tower-hidden/TOKEN", at=NOW - days(2))
    create(sm, "tower-hiddenold/TOKEN", at=NOW - days(40))
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__WORKSPACE_IDS", '["7", "8"]')
    result = run(aws, configure())
    plan = result.jobs[0].plan
    assert result.exit_code == 0  # "not visible" is not an outage
    assert {a.target: a.reason for a in plan.actions} == {
        "tower-ws8/TOKEN": "run ws8 SUCCEEDED (seqera, workspace 8) in us-east-1",
        "tower-hiddenold/TOKEN": (
            "run hiddenold not known finished (not visible: 403 in workspace 7, 404 in workspace 8; seqera),"
            " secret 40d > 30d in us-east-1"
        ),
    }
    assert plan.states == {"finished": 1, "not-visible": 1, "expired": 1}
    from prometheus_client import CollectorRegistry

    from rotator.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    metrics.record_run(result, settings=configure())
    assert metrics.registry.get_sample_value("rotator_run_secrets", {"state": "not-visible"}) == 1


def test_every_region_is_cleaned_and_restored(aws, api, configure, monkeypatch):
    east, west = aws.client("secretsmanager"), aws.client("secretsmanager", region="us-west-2")
    api.seqera.update(fin="SUCCEEDED", act="RUNNING")
    for sm in (east, west):
        create(sm, "tower-fin/TOKEN")
        create(sm, "tower-act/TOKEN")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__REGIONS", '["us-east-1", "us-west-2"]')
    settings = configure()
    result = run(aws, settings)
    assert result.exit_code == 0
    reasons = sorted(a.reason for a in result.jobs[0].plan.actions)
    assert reasons == ["run fin SUCCEEDED (seqera) in us-east-1", "run fin SUCCEEDED (seqera) in us-west-2"]
    for sm in (east, west):
        assert "DeletedDate" in describe(sm, "tower-fin/TOKEN")
        assert "DeletedDate" not in describe(sm, "tower-act/TOKEN")
    from rotator.restore import restore_secrets

    restored = [r.name for region in ("us-east-1", "us-west-2") for r in restore_secrets(aws.client("secretsmanager", region=region), run_ids={"fin"})]
    assert restored == ["tower-fin/TOKEN", "tower-fin/TOKEN"]


def test_tes_with_the_seqera_pattern_is_a_configuration_error(monkeypatch):
    from rotator.settings import ConfigError

    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__STATUS_SOURCE", "tes")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__URL", "https://tes.example.org/ga4gh/tes/v1")
    with pytest.raises(ConfigError, match="never a TES task id"):
        load_settings()
