"""migrate-store both ways between Secrets Manager (moto) and gen3workflow-db (a real PostgreSQL):
every live key copied with its secret, the newest first in the target, read back, dry-run by
default, the old secrets scheduled for deletion only when asked and only once verified."""

from __future__ import annotations

import json

import pg
import pytest
from cryptography.fernet import Fernet

from helpers import HOST, T0, TAG, days, make_key, make_user
from rotator.errors import ConfigError
from rotator.keystore.gen3workflow_db import Gen3WorkflowDbStore
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.migrate import COPY_KEY, DELETE_SOURCE, migrate_store, read_entries
from rotator.model import DONE, DRY_RUN, FAILED, SKIPPED, NewKey
from rotator.names import bot_user_name

postgres_server = pg.postgres_server  # the fixture

PREFIX = "gen3wf-rotator/gen3.example.org/bot-keys/"
KEY = Fernet.generate_key().decode()
BOT1, BOT2 = bot_user_name(HOST, "1"), bot_user_name(HOST, "2")


@pytest.fixture
def sm(aws):
    return SecretsManagerStore(aws.client("secretsmanager"), prefix=PREFIX)


@pytest.fixture
def db(postgres_server):
    database = pg.database("timestamp")  # the migration's column type; both are covered by the store tests
    database.reset()
    store = Gen3WorkflowDbStore(conninfo=database.conninfo, encryption_key=KEY, hostname=HOST)
    yield store
    store.close()


@pytest.fixture
def seeded(aws, sm):
    """Two bot users with two live keys each, stored in Secrets Manager; returns {user: [keys newest first]}."""
    iam = aws.client("iam")
    keys = {}
    for n, user in enumerate((BOT1, BOT2)):
        make_user(iam, user, TAG)
        older = make_key(iam, user, created=T0 + days(n), store=sm)
        newer = make_key(iam, user, created=T0 + days(n + 15), store=sm)
        keys[user] = [newer, older]
    return keys


def outcomes(results, action=COPY_KEY):
    return sorted((r.user, r.key_id, r.outcome) for r in results if r.action == action)


def secret_state(aws, user):
    return aws.client("secretsmanager").describe_secret(SecretId=PREFIX + user)


def test_secrets_manager_to_db_copies_every_key_verified(aws, sm, db, seeded):
    results = migrate_store(sm, db, users=None, apply=True, delete_source=False, iam=aws.client("iam"))
    assert outcomes(results) == sorted((u, k.key_id, DONE) for u, ks in seeded.items() for k in ks)
    assert all(r.detail.endswith("verified") for r in results)
    for user, keys in seeded.items():
        assert [(k.key_id, k.secret, k.created) for k in db.entries(user)] == [(k.key_id, k.secret, k.created) for k in keys]
        assert db.first_key_id(user) == sm.first_key_id(user) == keys[0].key_id
        assert "DeletedDate" not in secret_state(aws, user)  # the source is kept unless asked
    assert db.index() == {BOT1: 2, BOT2: 2}


def test_dry_run_only_reports(aws, sm, db, seeded):
    results = migrate_store(sm, db, users=None, apply=False, delete_source=True, iam=aws.client("iam"))
    assert {r.outcome for r in results} == {DRY_RUN}
    assert outcomes(results, DELETE_SOURCE) == [(BOT1, None, DRY_RUN), (BOT2, None, DRY_RUN)]
    assert db.index() == {}
    assert "DeletedDate" not in secret_state(aws, BOT1)


def test_delete_source_schedules_the_old_secrets_with_the_recovery_window(aws, sm, db, seeded):
    results = migrate_store(sm, db, users=[BOT1], apply=True, delete_source=True, recovery_window_days=7, iam=aws.client("iam"))
    assert outcomes(results, DELETE_SOURCE) == [(BOT1, None, DONE)]
    assert "in 7 days" in next(r.detail for r in results if r.action == DELETE_SOURCE)
    assert "DeletedDate" in secret_state(aws, BOT1)
    aws.client("secretsmanager").restore_secret(SecretId=PREFIX + BOT1)  # restorable inside the window
    assert "DeletedDate" not in secret_state(aws, BOT2)  # not asked for
    assert db.stored_key_ids(BOT1) == {k.key_id for k in seeded[BOT1]}


def test_running_again_copies_nothing_twice(aws, sm, db, seeded):
    migrate_store(sm, db, users=None, apply=True, delete_source=False)
    results = migrate_store(sm, db, users=None, apply=True, delete_source=False)
    assert {r.detail for r in results} == {"already in the target, verified"}
    assert db.index() == {BOT1: 2, BOT2: 2}


def test_a_key_iam_no_longer_has_is_not_copied(aws, sm, db, seeded):
    dead, live = seeded[BOT1]  # the newest one was deleted in IAM: the target must not name it first
    aws.client("iam").delete_access_key(UserName=BOT1, AccessKeyId=dead.key_id)
    results = migrate_store(sm, db, users=[BOT1], apply=True, delete_source=False, iam=aws.client("iam"))
    assert outcomes(results) == sorted([(BOT1, dead.key_id, SKIPPED), (BOT1, live.key_id, DONE)])
    assert db.stored_key_ids(BOT1) == {live.key_id}
    assert db.first_key_id(BOT1) == live.key_id


def test_an_unreadable_source_value_fails_that_user_alone_and_keeps_its_secret(aws, sm, db, seeded):
    bad = bot_user_name(HOST, "3")
    aws.client("secretsmanager").create_secret(Name=PREFIX + bad, SecretString=json.dumps({"not": "a list"}))
    results = migrate_store(sm, db, users=None, apply=True, delete_source=True)
    [failed] = [r for r in results if r.user == bad]
    assert failed.outcome == FAILED and "not a list" in failed.detail
    assert "DeletedDate" not in secret_state(aws, bad)
    for user in (BOT1, BOT2):  # the others went on
        assert db.stored_key_ids(user) == {k.key_id for k in seeded[user]}
        assert "DeletedDate" in secret_state(aws, user)


def test_a_different_secret_in_the_target_is_a_failure_and_the_source_is_kept(aws, sm, db, seeded):
    newer, older = seeded[BOT1]
    db.add(NewKey(BOT1, older.key_id, older.created, "some-other-secret-value"))
    results = migrate_store(sm, db, users=[BOT1], apply=True, delete_source=True)
    assert (BOT1, older.key_id, FAILED) in outcomes(results)
    assert outcomes(results, DELETE_SOURCE) == []
    assert "DeletedDate" not in secret_state(aws, BOT1)


def test_db_to_secrets_manager_takes_the_services_rows_too(aws, sm, db):
    with pg.database("timestamp").connect() as conn:  # a row the service made itself (created_time = now())
        token = Fernet(KEY).encrypt(b"service-made-secret").decode()
        conn.execute("INSERT INTO system_key (key_id, key_secret, user_id) VALUES ('AKIASERVICEMADE00001', %s, '1')", (token,))
    db.add(NewKey(BOT1, "AKIAROTATORMADE00002", T0, "rotator-made-secret"))
    db.add(NewKey(BOT2, "AKIAROTATORMADE00003", T0, "bot-two-secret"))
    results = migrate_store(db, sm, users=None, apply=True, delete_source=False)
    assert {r.outcome for r in results} == {DONE}
    assert [(k.key_id, k.secret) for k in read_entries(sm, BOT1)] == [
        ("AKIASERVICEMADE00001", "service-made-secret"),
        ("AKIAROTATORMADE00002", "rotator-made-secret"),
    ]
    assert sm.first_key_id(BOT1) == db.first_key_id(BOT1) == "AKIASERVICEMADE00001"
    assert sm.stored_key_ids(BOT2) == {"AKIAROTATORMADE00003"}


def test_a_user_with_nothing_stored_is_reported(sm, db):
    results = migrate_store(sm, db, users=[BOT1], apply=True, delete_source=True)
    assert [(r.action, r.user, r.outcome) for r in results] == [(COPY_KEY, BOT1, SKIPPED)]


def test_requests_that_cannot_be_carried_out_are_config_errors(sm, db):
    with pytest.raises(ConfigError, match="rows are left"):
        migrate_store(db, sm, users=None, apply=True, delete_source=True)
    with pytest.raises(ConfigError, match="recovery window"):
        migrate_store(sm, db, users=None, apply=True, delete_source=True, recovery_window_days=3)
    with pytest.raises(ConfigError, match="same store"):
        migrate_store(sm, sm, users=None, apply=True, delete_source=False)


def test_no_secret_is_ever_part_of_a_result(aws, sm, db, seeded):
    results = migrate_store(sm, db, users=None, apply=True, delete_source=True)
    shown = repr(results)
    assert not any(k.secret in shown for ks in seeded.values() for k in ks)
