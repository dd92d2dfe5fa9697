"""Faults at botocore's boundary, against moto: lost answers, conflicting writers, bad stored values,
transport errors. Each must end as a contained, counted failure or a repaired state, never a crash,
an orphan key or a store naming a key that no longer works. (`make chaos` does this over real HTTP.)"""

import json

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from freezegun import freeze_time

from helpers import ACCOUNT, HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import NewKey
from rotator.names import bot_user_name, iam_user_name
from rotator.runner import Runner
from rotator.settings import load_settings

BOT = bot_user_name(HOST, "1")
BOT2 = bot_user_name(HOST, "2")
NOW = T0 + days(40)


@pytest.fixture
def settings(monkeypatch, settings):
    """The shared settings, with the fraction brake out of the way: these runs touch one or two bots."""
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETION_FRACTION", "1")
    return load_settings()


def lose_answer(**_):
    raise ReadTimeoutError(endpoint_url="https://iam.amazonaws.com/")


def run(aws, settings, jobs=("bot-keys",)):
    with freeze_time(NOW):
        return Runner(settings, aws=aws).run(list(jobs), dry_run=False)


def stored(aws, settings, user=BOT):
    value = aws.client("secretsmanager").get_secret_value(SecretId=settings.bot_secret_prefix + user, VersionStage="AWSCURRENT")
    return [e["access_key_id"] for e in json.loads(value["SecretString"])]


def current_versions(aws, settings, user=BOT):
    versions = aws.client("secretsmanager").list_secret_version_ids(SecretId=settings.bot_secret_prefix + user)["Versions"]
    return [v["VersionId"] for v in versions if "AWSCURRENT" in v.get("VersionStages", [])]


def healthy(aws, settings, user=BOT):
    """Two active keys, both stored, the store naming exactly those, one version current."""
    ids = key_ids(aws.client("iam"), user)
    return len(ids) == 2 and set(stored(aws, settings, user)) == ids and len(current_versions(aws, settings, user)) == 1


def test_a_lost_create_answer_leaves_no_orphan_and_two_usable_keys(aws, settings, store, after, log_output):
    make_user(aws.client("iam"), BOT, TAG)
    after("iam", "CreateAccessKey", lose_answer)  # the first key is made, its secret never reaches us
    result = run(aws, settings)
    assert result.exit_code == 0, result.jobs[0].outcomes
    assert healthy(aws, settings)
    assert "key.lost_deleted" in log_output.getvalue()


def test_create_access_key_is_never_retried_by_botocore(aws, settings, fault):
    """A 5xx may mean the key was made: rotator, not botocore, decides, after looking at the user's keys."""
    make_user(aws.client("iam"), BOT, TAG)
    calls = []
    single = aws.client("iam", retries=False)
    single.meta.events.register("before-call.iam.CreateAccessKey", lambda **_: calls.append(1), unique_id="count")
    try:
        fault("iam", "CreateAccessKey", "ServiceFailure", times=1)
        result = run(aws, settings)
    finally:
        single.meta.events.unregister("before-call.iam.CreateAccessKey", unique_id="count")
    assert len(calls) == 3  # the failed attempt, its re-creation after a re-list, the second key
    assert result.exit_code == 0 and healthy(aws, settings)


def test_a_store_write_that_landed_is_not_rolled_back(aws, settings, store, after, log_output):
    make_user(aws.client("iam"), BOT, TAG)
    after("secretsmanager", "CreateSecret", lose_answer)  # stored, but we are not told
    result = run(aws, settings)
    assert healthy(aws, settings)
    assert "key.rolled_back" not in log_output.getvalue()
    assert "store.write_landed" in log_output.getvalue()
    assert result.exit_code == 0


def test_a_store_write_that_did_not_land_is_rolled_back(aws, settings, store, fault, log_output):
    iam = aws.client("iam")
    make_user(iam, BOT, TAG)
    with freeze_time(T0):
        old = make_key(iam, BOT, created=T0 + days(35), store=store)
    fault("secretsmanager", "PutSecretValue", "InternalServiceError")
    result = run(aws, settings)
    assert result.exit_code == 1
    assert key_ids(iam, BOT) == {old.key_id} and stored(aws, settings) == [old.key_id]  # no extra key, old one still first
    assert "key.rolled_back" in log_output.getvalue()


def test_concurrent_writers_never_lose_each_others_entries(aws, settings, store, after):
    """Another runner's write lands between our read and our AWSCURRENT move: ours is refused, re-read, re-applied."""
    other = SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix)
    store.add(NewKey(BOT, "AKIAFIRSTFIRSTFIRST1", T0, "first-secret-value"))
    raced = []

    def race(**_):
        if not raced:
            raced.append(1)
            other.add(NewKey(BOT, "AKIAOTHEROTHEROTHER2", T0 + days(1), "other-secret-value"))

    aws.client("secretsmanager").meta.events.register("before-call.secretsmanager.UpdateSecretVersionStage", race, unique_id="race")
    try:
        store.add(NewKey(BOT, "AKIAMINEMINEMINEMIN3", T0 + days(2), "mine-secret-value"))
    finally:
        aws.client("secretsmanager").meta.events.unregister("before-call.secretsmanager.UpdateSecretVersionStage", unique_id="race")
    assert raced
    assert stored(aws, settings) == ["AKIAMINEMINEMINEMIN3", "AKIAOTHEROTHEROTHER2", "AKIAFIRSTFIRSTFIRST1"]
    assert len(current_versions(aws, settings)) == 1


def test_make_before_break_the_store_always_names_a_live_key(aws, settings, store, after):
    """The only key of a bot is expired: at every call of the run, the store's first entry is active in IAM."""
    from moto.iam.models import iam_backends
    from moto.secretsmanager.models import secretsmanager_backends

    iam = aws.client("iam")
    make_user(iam, BOT, TAG)
    with freeze_time(T0):
        make_key(iam, BOT, created=T0, store=store)
    violations = []

    def check(**kwargs):
        secret = secretsmanager_backends[ACCOUNT]["us-east-1"].secrets.get(settings.bot_secret_prefix + BOT)
        if secret is None:
            return
        current = next(v for v in secret.versions.values() if "AWSCURRENT" in v["version_stages"])
        first = json.loads(current["secret_string"])[0]["access_key_id"]
        live = {k.access_key_id for k in iam_backends[ACCOUNT]["global"].users[BOT].access_keys if k.status == "Active"}
        if first not in live:
            violations.append((kwargs.get("event_name"), first))

    for service in ("iam", "secretsmanager"):
        for retries in (True, False):
            aws.client(service, retries=retries).meta.events.register("after-call", check, unique_id="mbb-check")
    try:
        result = run(aws, settings)
    finally:
        for service in ("iam", "secretsmanager"):
            for retries in (True, False):
                aws.client(service, retries=retries).meta.events.unregister("after-call", unique_id="mbb-check")
    assert result.exit_code == 0 and violations == []
    assert healthy(aws, settings)
    assert [o.action.kind for o in result.jobs[0].outcomes] == ["create-key", "delete-key", "create-key"]


@pytest.mark.parametrize(
    "value",
    [
        '[{"access_key_id": null, "secret_access_key": "s", "created": "2026-01-01T00:00:00+00:00"}]',
        '[{"access_key_id": ["AKIA"], "secret_access_key": "s", "created": "2026-01-01T00:00:00+00:00"}]',
        '[{"access_key_id": "AKIAVALIDVALIDVALID1", "secret_access_key": "s", "created": 1767225600}]',
        '[{"access_key_id": "AKIAVALIDVALIDVALID1", "created": "2026-01-01T00:00:00+00:00"}]',
        '[{"access_key_id": "AKIAVALIDVALIDVALID1", "secret_access_key": "s"}]',
        '{"access_key_id": "AKIAVALIDVALIDVALID1"}',
        "[" * 5000 + "]" * 5000,
        None,  # SecretBinary only
    ],
    ids=["null-id", "list-id", "number-created", "no-secret", "no-created", "not-a-list", "deep", "binary"],
)
def test_a_bad_stored_value_leaves_that_bot_alone_and_the_others_go_on(aws, settings, store, value, log_output):
    iam = aws.client("iam")
    for bot in (BOT, BOT2):
        make_user(iam, bot, TAG)
    with freeze_time(T0):
        kept = make_key(iam, BOT, created=T0 + days(35))  # its real entry is unreadable: never an "orphan"
    sm = aws.client("secretsmanager")
    if value is None:
        sm.create_secret(Name=settings.bot_secret_prefix + BOT, SecretBinary=b"\x00binary-value")
    else:
        sm.create_secret(Name=settings.bot_secret_prefix + BOT, SecretString=value)
    result = run(aws, settings)
    job = result.jobs[0]
    assert result.exit_code == 1 and job.outcome == "failed"
    assert any("store unreadable" in e for e in job.plan.errors)
    assert key_ids(iam, BOT) == {kept.key_id}  # nothing deleted, nothing created
    assert healthy(aws, settings, BOT2)  # the other bot went on
    assert "binary-value" not in log_output.getvalue()


def test_delete_secret_applied_but_answer_lost_counts_as_done(aws, monkeypatch):
    """botocore retries a DeleteSecret whose answer was lost; the retry hears "marked for deletion": done."""
    from moto.secretsmanager.models import secretsmanager_backends

    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    settings = load_settings()
    sm = aws.client("secretsmanager")
    sm.create_secret(Name="tower-abc/TOKEN", SecretString="v")
    backend = secretsmanager_backends[ACCOUNT]["us-east-1"]
    backend.secrets["tower-abc/TOKEN"].created_date = int((NOW - days(45)).timestamp())

    def first_attempt_applied(**_):
        sm.meta.events.unregister("before-call.secretsmanager.DeleteSecret", unique_id="applied")
        backend.delete_secret("tower-abc/TOKEN", recovery_window_in_days=7, force_delete_without_recovery=False)

    sm.meta.events.register("before-call.secretsmanager.DeleteSecret", first_attempt_applied, unique_id="applied")
    with freeze_time(NOW):
        result = Runner(settings, aws=aws).run(["run-secrets"], dry_run=False)
    assert [o.result for o in result.jobs[0].outcomes] == ["done"]
    assert result.exit_code == 0


def test_a_transport_error_is_a_contained_failure_with_metrics(monkeypatch):
    """No TypeError from the metrics hooks (after-call-error has no model), and the call is counted."""
    import boto3
    from prometheus_client import CollectorRegistry

    from rotator.aws import Aws
    from rotator.metrics import Metrics

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    aws = Aws(boto3.session.Session(region_name="us-east-1"))
    metrics = Metrics(CollectorRegistry())
    metrics.instrument(aws)
    with pytest.raises(EndpointConnectionError):
        aws.client("sts", retries=False).get_caller_identity()
    assert metrics.registry.get_sample_value(
        "rotator_aws_api_calls_total", {"service": "sts", "operation": "GetCallerIdentity", "outcome": "error"}
    ) == 1


def test_a_transport_error_listing_one_users_keys_fails_that_user_alone(aws, settings, fault, monkeypatch):
    iam = aws.client("iam")
    for n in ("1", "2"):
        make_user(iam, iam_user_name(HOST, n), TAG)
        with freeze_time(T0):
            make_key(iam, iam_user_name(HOST, n), created=T0)
    real = iam.list_access_keys
    fault("iam", "GenerateCredentialReport", "AccessDenied")  # the fallback: ListAccessKeys for every user

    def flaky(**kwargs):
        if kwargs.get("UserName") == iam_user_name(HOST, "1"):
            raise EndpointConnectionError(endpoint_url="https://iam.amazonaws.com/")
        return real(**kwargs)

    monkeypatch.setattr(iam, "list_access_keys", flaky)
    monkeypatch.setattr(iam, "get_paginator", _paginator_with(iam, flaky))
    result = run(aws, settings, jobs=("user-keys",))
    monkeypatch.undo()
    job = result.jobs[0]
    assert result.exit_code == 1 and any(iam_user_name(HOST, "1") in e for e in job.plan.errors)
    assert key_ids(iam, iam_user_name(HOST, "2")) == set()  # the other user's expired key went
    assert len(key_ids(iam, iam_user_name(HOST, "1"))) == 1  # left alone


def _paginator_with(iam, list_access_keys):
    real_paginator = iam.get_paginator

    class _Pages:
        def paginate(self, **kwargs):
            yield list_access_keys(**kwargs)

    return lambda name: _Pages() if name == "list_access_keys" else real_paginator(name)
