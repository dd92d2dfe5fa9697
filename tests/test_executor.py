"""The executor and the key jobs' execute against moto: idempotence, races, failure isolation, dry-run."""

import pytest

from helpers import HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator.executor import Executor
from rotator.jobs import get_job
from rotator.jobs._keys import KeyPlan
from rotator.jobs.base import RunContext
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import CREATE_KEY, DELETE_KEY, Action
from rotator.runner import utcnow
from rotator.settings import Settings

USER = "gen3wf-gen3-example-org-1"
BOT = "gen3wf-gen3-example-org-1-bot"


@pytest.fixture
def store(aws):
    return SecretsManagerStore(aws.client("secretsmanager"), prefix="p/")


def execute(aws, actions, *, dry_run=False):
    """Run planned actions through the executor, one job after the other, as the runner does."""
    settings = Settings(hostname=HOST, bot_keys={"secret_prefix": "p/"})
    ctx = RunContext(settings=settings, aws=aws, now=T0, clock=utcnow)
    outcomes = []
    for job in dict.fromkeys(a.job for a in actions):
        plan = KeyPlan(job=job, actions=tuple(a for a in actions if a.job == job), managed=0)
        Executor(dry_run=dry_run).execute(get_job(job), plan, ctx, outcomes)
    return outcomes


def delete(job, user, key_id):
    return Action(job=job, kind=DELETE_KEY, target=f"{user}/{key_id}", reason="test", user=user, key_id=key_id)


def create(user):
    return Action(job="bot-keys", kind=CREATE_KEY, target=user, reason="test", user=user)


def test_deleting_a_key_already_gone_counts_as_done(aws, store):
    make_user(aws.client("iam"), USER, TAG)
    outcomes = execute(aws, [delete("user-keys", USER, "AKIAGONEGONEGONEGONE")])
    assert [o.result for o in outcomes] == ["done"]


def test_one_failure_does_not_stop_the_others(aws, store, fault):
    iam = aws.client("iam")
    for n in ("1", "2", "3"):
        make_user(iam, f"{USER}{n}", TAG)
    keys = [make_key(iam, f"{USER}{n}", created=T0) for n in ("1", "2", "3")]
    fault("iam", "DeleteAccessKey", "ServiceFailure", times=1)
    outcomes = execute(aws, [delete("user-keys", k.user, k.key_id) for k in keys])
    assert [o.result for o in outcomes] == ["failed", "done", "done"]
    assert "ServiceFailure" in outcomes[0].error
    assert key_ids(iam, keys[0].user) == {keys[0].key_id}


def test_limit_exceeded_means_someone_else_created_the_key(aws, store):
    iam = aws.client("iam")
    make_user(iam, BOT, TAG)
    make_key(iam, BOT, created=T0, store=store)
    make_key(iam, BOT, created=T0 + days(1), store=store)  # "another actor"
    outcomes = execute(aws, [create(BOT)])
    assert outcomes[0].result == "skipped"
    assert "another runner" in outcomes[0].error
    assert len(key_ids(iam, BOT)) == 2


def test_bot_creation_skipped_when_a_deletion_failed(aws, store, fault):
    iam = aws.client("iam")
    make_user(iam, BOT, TAG)
    old = make_key(iam, BOT, created=T0, store=store)
    make_key(iam, BOT, created=T0 + days(16), store=store)
    fault("iam", "DeleteAccessKey", "ServiceFailure")
    outcomes = execute(aws, [delete("bot-keys", BOT, old.key_id), create(BOT)])
    assert [o.result for o in outcomes] == ["failed", "skipped"]
    # the store forgot the key first, so the service never hands out a key about to vanish
    assert store.stored_key_ids(BOT) == key_ids(iam, BOT) - {old.key_id}


def test_dry_run_calls_nothing(aws, store, fault):
    for op in ("DeleteAccessKey", "CreateAccessKey", "ListAccessKeys"):
        fault("iam", op, "ShouldNotBeCalled")
    for op in ("GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage", "CreateSecret"):
        fault("secretsmanager", op, "ShouldNotBeCalled")
    outcomes = execute(aws, [delete("bot-keys", BOT, "AKIAXXXXXXXXXXXXXXXX"), create(BOT)], dry_run=True)
    assert [o.result for o in outcomes] == ["dry-run", "dry-run"]
