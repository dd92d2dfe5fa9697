"""A new bot key is proven to work (sts:GetCallerIdentity as its user) before the store hands it out."""

import json

import pytest
from botocore.exceptions import ClientError
from freezegun import freeze_time
from prometheus_client import CollectorRegistry

from helpers import HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator import verify as verify_module
from rotator.metrics import Metrics
from rotator.model import NewKey
from rotator.names import bot_user_name
from rotator.runner import Runner
from rotator.settings import load_settings
from rotator.verify import _is_user, verify_key

BOT = bot_user_name(HOST, "1")
NOW = T0 + days(40)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(verify_module, "FIRST_DELAY_SECONDS", 0.01)
    monkeypatch.setattr(verify_module, "MAX_DELAY_SECONDS", 0.02)


@pytest.fixture
def refuse_new_keys(aws):
    """Answer InvalidClientTokenId to the first ``n`` GetCallerIdentity calls signed with any key but the runner's."""
    state = {"left": 0, "seen": []}

    def refuse(request_signer=None, **_):
        access_key = request_signer._credentials.access_key
        if not access_key.startswith("AKIA"):  # the runner's own (moto's fake) credentials
            return
        state["seen"].append(access_key)
        if state["left"] > 0:
            state["left"] -= 1
            if state.get("check"):
                state["check"](access_key)
            raise ClientError({"Error": {"Code": "InvalidClientTokenId", "Message": "not yet"}}, "GetCallerIdentity")

    aws.on("before-call.sts.GetCallerIdentity", refuse, unique_id="refuse-new-keys")
    yield state
    aws.off("refuse-new-keys")


def first_stored(aws, settings):
    value = aws.client("secretsmanager").get_secret_value(SecretId=settings.bot_secret_prefix + BOT, VersionStage="AWSCURRENT")
    return json.loads(value["SecretString"])[0]["access_key_id"]


def test_moto_verifies_a_real_new_key(aws):
    iam = aws.client("iam")
    make_user(iam, BOT, TAG)
    raw = iam.create_access_key(UserName=BOT)["AccessKey"]
    key = NewKey(BOT, raw["AccessKeyId"], raw["CreateDate"], raw["SecretAccessKey"])
    result = verify_key(aws, key, account_id="123456789012", timeout_seconds=5)
    assert result.ok and result.attempts == 1
    wrong_account = verify_key(aws, key, account_id="111122223333", timeout_seconds=5)
    assert not wrong_account.ok and wrong_account.reason == "wrong-identity"


def test_the_store_never_hands_out_a_key_before_it_works(aws, settings, store, refuse_new_keys):
    iam = aws.client("iam")
    make_user(iam, BOT, TAG)
    with freeze_time(T0):
        old = make_key(iam, BOT, created=T0, store=store)  # 40 days old at NOW: replaced make-before-break
    refuse_new_keys["left"] = 3
    handed_out_early = []
    # While the new key is refused, readers must still take a key that works (checked inside the hook).
    refuse_new_keys["check"] = lambda new_key: first_stored(aws, settings) == new_key and handed_out_early.append(new_key)

    with freeze_time(NOW):
        result = Runner(settings, aws=aws).run(["bot-keys"], dry_run=False)
    assert result.exit_code == 0 and handed_out_early == []
    assert len(refuse_new_keys["seen"]) >= 4  # three refusals, then it answered
    ids = key_ids(iam, BOT)
    assert len(ids) == 2 and old.key_id not in ids and first_stored(aws, settings) in ids
    verified = [o.verification for o in result.jobs[0].outcomes if o.verification]
    assert len(verified) == 2 and all(v.ok for v in verified) and verified[0].attempts == 4


def test_a_key_that_never_works_is_removed_and_the_old_one_stays_first(aws, settings, store, refuse_new_keys, monkeypatch, log_output):
    iam = aws.client("iam")
    make_user(iam, BOT, TAG)
    with freeze_time(T0):
        old = make_key(iam, BOT, created=T0 + days(35), store=store)
    monkeypatch.setenv("ROTATOR_BOT_KEYS__VERIFY_TIMEOUT_SECONDS", "0.1")
    settings = load_settings()
    refuse_new_keys["left"] = 10**6
    with freeze_time(NOW):
        result = Runner(settings, aws=aws).run(["bot-keys"], dry_run=False)
    assert result.exit_code == 1
    assert key_ids(iam, BOT) == {old.key_id} and first_stored(aws, settings) == old.key_id
    assert "key.unverified" in log_output.getvalue()
    metrics = Metrics(CollectorRegistry())
    metrics.record_run(result, settings=settings)
    assert metrics.registry.get_sample_value("rotator_key_verification_failures_total", {"reason": "refused"}) == 1
    assert metrics.registry.get_sample_value("rotator_key_verification_seconds_count") == 1
    assert metrics.registry.get_sample_value("rotator_bot_users_unhealthy") == 1


def test_the_plan_shows_the_verification_step(aws, settings):
    make_user(aws.client("iam"), BOT, TAG)
    result = Runner(settings, aws=aws).run(["bot-keys"], dry_run=True)
    assert all(a.reason.endswith("verified before use") for a in result.jobs[0].plan.actions)


@pytest.mark.parametrize(
    ("arn", "ok"),
    [
        (f"arn:aws:iam::123456789012:user/{BOT}", True),
        (f"arn:aws:iam::123456789012:user/some/path/{BOT}", True),
        (f"arn:aws-us-gov:iam::123456789012:user/{BOT}", True),
        (f"arn:aws:iam::123456789012:user/{BOT}-other", False),
        ("arn:aws:iam::111122223333:user/" + BOT, False),
        (f"arn:aws:sts::123456789012:assumed-role/{BOT}/x", False),
        ("", False),
    ],
)
def test_identity_must_be_the_bot_user(arn, ok):
    assert _is_user(arn, BOT, "123456789012") is ok
