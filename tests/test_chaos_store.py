"""The fault-injection suite's store views (chaos/stores.py): the ``gen3workflow-db`` view seeds gen3-workflow's
``system_key`` table as the service writes it and judges it as the service reads it (newest ``created_time``
first, Fernet-decrypted), so that the suite's invariants flag on the table what they flag on Secrets Manager;
and its trigger lets set b kill a runner with a table transaction open."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pg
import psycopg
import pytest
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from chaos.invariants import Checker  # noqa: E402
from chaos.proxy import ChaosProxy  # noqa: E402
from chaos.scenario import build, clients  # noqa: E402
from chaos.stores import DbView, SecretsManagerView  # noqa: E402

postgres_server = pg.postgres_server  # the fixture


@pytest.fixture(scope="module")
def proxy():
    p = ChaosProxy()
    p.start()
    yield p
    p.stop()


@pytest.fixture
def db_view(postgres_server, tmp_path):
    view = DbView(tmp_path, server=postgres_server)
    yield view
    view.close()


def seeded(proxy, view, seed=3, created_type="timestamp"):
    proxy.reset_backend(seed)
    view.begin("test", created_type)
    scenario = build(seed, proxy.moto_url, store=view)
    view.seeded()
    return scenario, Checker(scenario, set_name="t", seed=seed, store=view)


def bot(scenario, shape):
    return next(b for b in scenario.bots.values() if b.shape == shape)


def kinds(checker, bot_fact=None):
    return {v.kind for v in checker.violations if bot_fact is None or v.subject.startswith(bot_fact.name)}


@pytest.mark.parametrize("created_type", ["timestamp", "timestamptz"])
def test_rows_are_seeded_as_the_service_writes_them(proxy, db_view, created_type):
    scenario, checker = seeded(proxy, db_view, created_type=created_type)
    assert checker.violations == []
    fernet = Fernet(db_view.key.encode())
    with db_view.server.admin(db_view.dbname) as conn:
        for b in scenario.bots.values():
            # the service's get_system_key: the user's row with the greatest created_time, decrypted
            row = conn.execute(
                "SELECT key_id, key_secret FROM system_key WHERE user_id = %s ORDER BY created_time DESC LIMIT 1", (b.user_id,)
            ).fetchone()
            stored = [k for k in b.keys if scenario.keys[k].stored] + sorted(b.stale_ids)
            if not stored:
                assert row is None, b.shape
                continue
            assert row is not None, b.shape
            secret = fernet.decrypt(row[1].encode()).decode()
            if row[0] in scenario.keys:
                assert secret == scenario.keys[row[0]].secret
            assert b.usable_at_start == (row[0] in scenario.keys and scenario.keys[row[0]].active), b.shape
        (column,) = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'system_key' AND column_name = 'created_time'"
        ).fetchone()
        assert column == pg.CREATED_TYPES[created_type].lower()
        decoys = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM system_key")} - {b.user_id for b in scenario.bots.values()}
    assert decoys == set(scenario.decoy_store) and len(decoys) == 3
    assert scenario.summary()


@pytest.mark.parametrize("store", ["secretsmanager", "gen3workflow-db"])
def test_both_views_flag_a_store_that_hands_out_a_deleted_key(proxy, postgres_server, tmp_path, store):
    view = SecretsManagerView() if store == "secretsmanager" else DbView(tmp_path, server=postgres_server)
    try:
        scenario, checker = seeded(proxy, view)
        healthy = bot(scenario, "healthy")
        handed = view.read_bots([healthy])[healthy.name].first[0].key_id
        assert handed == min(healthy.keys, key=lambda k: scenario.keys[k].age)  # the newer key
        iam, _ = clients(proxy.moto_url)
        iam.delete_access_key(UserName=healthy.name, AccessKeyId=handed)
        checker.check_state(when="test")
        want = {"store-first-dead", "store-lists-deleted-key", "wrong-deletion"}  # a live key, too
        assert kinds(checker, healthy) == want and kinds(checker) == want
    finally:
        view.close()


def test_the_table_view_flags_wrong_secrets_bad_rows_ties_decoys_and_the_wrong_store(proxy, db_view):
    scenario, checker = seeded(proxy, db_view, created_type="timestamptz")
    one, due, inactive = bot(scenario, "one-key"), bot(scenario, "rotation-due"), bot(scenario, "inactive")
    inactive_key = next(k for k in inactive.keys if not scenario.keys[k].active)
    ghost = next(u for u, why in scenario.decoy_store.items() if "no IAM user" in why)
    with db_view.server.admin(db_view.dbname) as conn:
        wrong = db_view.fernet.encrypt(b"not-the-secret").decode()
        conn.execute("UPDATE system_key SET key_secret = %s WHERE user_id = %s", (wrong, one.user_id))
        conn.execute("UPDATE system_key SET key_secret = 'not-a-fernet-token' WHERE key_id = %s", (due.keys[0],))
        # the inactive key's row stamped as new as the live one: the service may hand out either
        conn.execute(
            "UPDATE system_key SET created_time = (SELECT max(created_time) FROM system_key WHERE user_id = %s) WHERE key_id = %s",
            (inactive.user_id, inactive_key),
        )
        conn.execute("DELETE FROM system_key WHERE user_id = %s", (ghost,))
    _, sm = clients(proxy.moto_url)
    sm.create_secret(Name=scenario.prefix + one.name, SecretString="[]")
    checker.check_state(when="test")
    assert kinds(checker, one) == {"store-secret-mismatch", "store-first-dead"}
    assert "store-malformed" in kinds(checker, due)
    first_dead = [v for v in checker.violations if v.kind == "store-first-dead" and v.subject.startswith(inactive.name)]
    assert first_dead and "tied at the greatest created_time" in first_dead[0].what and "Inactive" in first_dead[0].what
    assert any(v.kind == "decoy-touched" and ghost in v.subject for v in checker.violations)
    assert any(v.kind == "wrong-store" for v in checker.violations)
    assert not any(h in v.what for v in checker.violations for h in checker.hidden)


def test_committed_writes_are_reported_and_a_held_transaction_is_killed_and_rolled_back(proxy, db_view, tmp_path):
    scenario, checker = seeded(proxy, db_view)
    notes: list[str] = []
    db_view.on_write = notes.append
    env = db_view.env() | {"ROTATOR_BOT_KEYS__DB__DATABASE": db_view.dbname}
    token = db_view.fernet.encrypt(b"s").decode()
    writer = tmp_path / "writer.py"
    writer.write_text(
        "import os, sys, psycopg\n"
        "e = os.environ\n"
        "conn = psycopg.connect(host=e['ROTATOR_BOT_KEYS__DB__HOST'], port=e['ROTATOR_BOT_KEYS__DB__PORT'],"
        " user=e['ROTATOR_BOT_KEYS__DB__USER'], dbname=e['ROTATOR_BOT_KEYS__DB__DATABASE'],"
        " password=open(e['ROTATOR_BOT_KEYS__DB__PASSWORD_FILE']).read().strip(), application_name='gen3wf-rotator-test')\n"
        "with conn.transaction():\n"
        "    conn.execute(\"INSERT INTO system_key (key_id, key_secret, user_id) VALUES (%s, %s, 'w')\", (sys.argv[1], sys.argv[2]))\n"
    )

    def write(key_id):
        return subprocess.Popen([sys.executable, str(writer), key_id, token], env={**os.environ, **env})

    assert write("AKIACHAOSWRITE000001").wait(timeout=30) == 0  # a write the runner's own role may make
    deadline = time.monotonic() + 5
    while not notes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notes and notes[0].startswith("INSERT #1") and db_view.writes() == 1

    db_view.arm_hold(2)
    proc = write("AKIACHAOSWRITE000002")
    done = threading.Event()
    assert db_view.kill_when_held(proc.pid, done)
    assert proc.wait(timeout=30) == -9
    assert db_view.quiesce(timeout=30)
    with db_view.server.admin(db_view.dbname) as conn:
        ids = {k for (k,) in conn.execute("SELECT key_id FROM system_key WHERE user_id = 'w'")}
    assert ids == {"AKIACHAOSWRITE000001"}  # the killed writer's transaction rolled back
    assert len(notes) == 1


def test_the_view_drops_its_databases_and_role(postgres_server, tmp_path):
    view = DbView(tmp_path, server=postgres_server)
    view.begin("gone", "timestamp")
    name, role = view.dbname, view.role
    view.close()
    with postgres_server.admin() as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"chaos_{view.tag}%",)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0] == 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=postgres_server.socket_dir, port=postgres_server.port, user="postgres", dbname=name).close()
