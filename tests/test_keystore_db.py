"""gen3workflow-db against a real PostgreSQL: byte-compatible with the service (its Fernet, its table,
its "greatest created_time" rule) under both ``created_time`` column types; configuration problems
found by check() before any change; errors that never show the password or the key."""

from __future__ import annotations

import threading
import time
import traceback
from datetime import UTC, datetime, timedelta, timezone

import pg
import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg.conninfo import conninfo_to_dict

from helpers import HOST, T0, days
from rotator.aws import SafeError, describe_error
from rotator.errors import ConfigError
from rotator.keystore import StoreConflict, StoreUnreadable, WouldEmptyStore
from rotator.keystore.gen3workflow_db import DatabaseUnreachable, Gen3WorkflowDbStore, conninfo_from
from rotator.model import NewKey
from rotator.names import bot_user_name, iam_user_name

postgres_server, postgres, pg_db = pg.postgres_server, pg.postgres, pg.pg_db  # the fixtures

KEY = Fernet.generate_key().decode()
USER_ID = "1"
BOT = bot_user_name(HOST, USER_ID)
A, B, C = "AKIAAAAAAAAAAAAAAAA1", "AKIABBBBBBBBBBBBBBB2", "AKIACCCCCCCCCCCCCCC3"


@pytest.fixture
def any_store():
    made = []

    def make(conninfo: str, *, key: str = KEY, **kwargs) -> Gen3WorkflowDbStore:
        store = Gen3WorkflowDbStore(conninfo=conninfo, encryption_key=key, hostname=HOST, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def stores(pg_db, any_store):
    return lambda conninfo=None, **kwargs: any_store(conninfo or pg_db.conninfo, **kwargs)


@pytest.fixture
def store(stores):
    return stores()


def service_insert(db: pg.Database, key_id: str, secret: str, user_id: str = USER_ID) -> None:
    """A row as gen3-workflow's get_system_key writes it: its Fernet token, created_time left to now()."""
    token = Fernet(KEY).encrypt(bytes(secret, encoding="utf8")).decode("utf8")
    with db.connect() as conn:
        conn.execute("INSERT INTO system_key (key_id, key_secret, user_id) VALUES (%s, %s, %s)", (key_id, token, user_id))


def service_newest(db: pg.Database, user_id: str = USER_ID) -> tuple[str, str] | None:
    """The service's selection rule: the user's row with the greatest created_time, decrypted."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT key_id, key_secret FROM system_key WHERE user_id = %s ORDER BY created_time DESC LIMIT 1", (user_id,)
        ).fetchone()
    return (row[0], Fernet(KEY).decrypt(row[1].encode("utf8")).decode("utf8")) if row else None


def rows(db: pg.Database) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute("SELECT key_id, key_secret, user_id, created_time FROM system_key ORDER BY key_id").fetchall()


# --- byte-compatibility ---------------------------------------------------------------------


def test_what_rotator_writes_the_service_reads(pg_db, store):
    created = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
    store.add(NewKey(BOT, A, created, "the-secret/of+A"))
    [(key_id, token, user_id, created_time)] = rows(pg_db)
    assert (key_id, user_id) == (A, USER_ID)  # the Gen3 user id, without -bot
    assert Fernet(KEY).decrypt(token.encode("utf8")).decode("utf8") == "the-secret/of+A"
    if pg_db.created_type == "timestamp":
        assert created_time == created.replace(tzinfo=None)  # UTC wall time
    else:
        assert created_time == created
    assert service_newest(pg_db) == (A, "the-secret/of+A")


@pytest.mark.parametrize("order", [(0, 15, 1), (15, 0, 1), (1, 0, 15)])
def test_the_services_rule_takes_the_newest_key_rotator_wrote(pg_db, stores, order):
    # A session in another zone and CreateDates with offsets: the newest instant still wins.
    store = stores(pg_db.server.conninfo(pg_db.dbname, options="-c TimeZone=America/New_York"))
    for n, age in zip((A, B, C), order, strict=True):
        zone = timezone(timedelta(hours=5 if n == B else -7))
        store.add(NewKey(BOT, n, (T0 + days(age)).astimezone(zone), f"secret-{n}"))
    newest = (A, B, C)[order.index(15)]
    assert service_newest(pg_db) == (newest, f"secret-{newest}")
    assert store.first_key_id(BOT) == newest
    by_time = {k.key_id: k.created for k in store.entries(BOT)}
    assert by_time == {n: T0 + days(age) for n, age in zip((A, B, C), order, strict=True)}


def test_rows_the_service_wrote_are_stored_keys(pg_db, store):
    service_insert(pg_db, A, "service-made-secret")
    assert store.index() == {BOT: 1}
    assert store.stored_key_ids(BOT) == {A}
    assert store.first_key_id(BOT) == A
    [entry] = store.entries(BOT)
    assert (entry.key_id, entry.secret, entry.user) == (A, "service-made-secret", BOT)
    assert abs(entry.created - datetime.now(UTC)) < timedelta(minutes=1)  # now(), read as UTC
    store.add(NewKey(BOT, B, datetime.now(UTC) + timedelta(seconds=2), "rotator-made-secret"))
    assert service_newest(pg_db) == (B, "rotator-made-secret")
    assert store.first_key_id(BOT) == B


def test_user_names_map_to_gen3_user_ids_and_back(pg_db, store):
    service_insert(pg_db, A, "s-of-user-42", user_id="42")
    assert store.index() == {bot_user_name(HOST, "42"): 1}
    for not_a_bot in (iam_user_name(HOST, "42"), "someone-else-bot", bot_user_name("other.org", "42")):
        with pytest.raises(StoreUnreadable):
            store.stored_key_ids(not_a_bot)
        with pytest.raises(StoreUnreadable):
            store.add(NewKey(not_a_bot, B, T0, "never-written"))
    assert [r[0] for r in rows(pg_db)] == [A]


def test_a_key_id_stored_for_another_user_is_a_conflict(pg_db, store):
    service_insert(pg_db, A, "s", user_id="7")
    with pytest.raises(StoreConflict):
        store.add(NewKey(BOT, A, T0, "another"))
    assert [r[2] for r in rows(pg_db)] == ["7"]


# --- per-user transactions ----------------------------------------------------------------------


def test_changes_wait_for_another_runners_lock_on_the_user(pg_db, store):
    """Another runner holds the user's lock and retires one of two keys: ours waits, then sees it gone."""
    store.add(NewKey(BOT, A, T0, "sa"))
    store.add(NewKey(BOT, B, T0 + days(1), "sb"))
    outcome = []
    with pg_db.connect() as other:
        with other.transaction():
            other.execute("SELECT pg_advisory_xact_lock(hashtext('gen3wf-rotator:' || %s))", (USER_ID,))
            other.execute("DELETE FROM system_key WHERE key_id = %s", (B,))

            def retire_a():
                try:
                    store.remove(BOT, {A}, keep_one=True)
                    outcome.append("removed")
                except WouldEmptyStore:
                    outcome.append("refused")

            worker = threading.Thread(target=retire_a)
            worker.start()
            time.sleep(0.15)
            assert outcome == []  # waiting on the lock
        worker.join(5)
    assert outcome == ["refused"]
    assert store.stored_key_ids(BOT) == {A}


# --- configuration, checked before any change ---------------------------------------------------


def test_check_passes_on_the_service_table_and_once_is_enough(pg_db, store, stores):
    service_insert(pg_db, A, "s1")
    store.check()
    with pg_db.connect() as conn:
        conn.execute("UPDATE system_key SET key_secret = 'not-a-fernet-token'")  # a key that no longer decrypts anything
    store.check()  # passed once: not asked again (a run checks before its first change, not at every one)
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY does not decrypt"):
        stores().check()  # a store that had not checked yet sees it


def test_a_wrong_encryption_key_is_a_config_error_from_check(pg_db, stores):
    for n, k in enumerate((A, B, C)):
        service_insert(pg_db, k, f"service-secret-{n}")
    wrong = Fernet.generate_key().decode()
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY does not decrypt") as info:
        stores(key=wrong).check()
    assert KEY not in str(info.value) and wrong not in str(info.value)
    assert "service-secret" not in str(info.value)


def test_one_bad_row_is_that_users_problem_not_a_config_error(pg_db, store):
    service_insert(pg_db, A, "good")
    with pg_db.connect() as conn:
        conn.execute("INSERT INTO system_key (key_id, key_secret, user_id) VALUES (%s, 'garbage', '2')", (B,))
    store.check()
    with pytest.raises(StoreUnreadable):
        store.stored_key_ids(bot_user_name(HOST, "2"))
    assert store.stored_key_ids(BOT) == {A}


def test_an_empty_table_checks_with_any_key_and_rows_follow_that_key(pg_db, stores):
    """Nothing to decrypt yet: any key passes, and what rotator then writes, the service reads with that key."""
    key = Fernet.generate_key().decode()
    store = stores(key=key)
    store.check()
    store.add(NewKey(BOT, A, T0, "first-secret"))
    with pg_db.connect() as conn:
        (token,) = conn.execute("SELECT key_secret FROM system_key WHERE key_id = %s", (A,)).fetchone()
    assert Fernet(key.encode()).decrypt(token.encode()) == b"first-secret"


def test_not_a_fernet_key_is_a_config_error(pg_db):
    with pytest.raises(ConfigError, match="not a Fernet key") as info:
        Gen3WorkflowDbStore(conninfo=pg_db.conninfo, encryption_key="YOUR_KEY_HERE", hostname=HOST)
    assert "YOUR_KEY_HERE" not in str(info.value)


@pytest.fixture(scope="module")
def no_table_db(postgres_server):
    with postgres_server.admin() as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'no_table'").fetchone():
            conn.execute("CREATE DATABASE no_table")
    return postgres_server.conninfo("no_table")


def test_a_missing_table_is_a_config_error(stores, no_table_db):
    store = stores(no_table_db)
    with pytest.raises(ConfigError, match="system_key not found.*never creates"):
        store.check()
    with pytest.raises(ConfigError, match="system_key not found"):
        store.index()
    with pytest.raises(ConfigError, match="system_key not found"):
        store.add(NewKey(BOT, A, T0, "never-written"))


def test_a_database_user_without_privileges_is_a_config_error(pg_db, stores):
    with pg_db.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS reader")
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        conn.execute("GRANT SELECT ON system_key TO reader")
    try:
        store = stores(pg_db.server.conninfo(pg_db.dbname, user="reader", password="reader-pw"))
        store.check()
        assert store.stored_key_ids(BOT) == frozenset()
        with pytest.raises(ConfigError, match="needs SELECT, INSERT, UPDATE and DELETE"):
            store.add(NewKey(BOT, A, T0, "never-written"))
        store.close()
    finally:
        with pg_db.connect() as conn:
            conn.execute("REVOKE ALL ON system_key FROM reader")
            conn.execute("DROP ROLE reader")


# --- errors never show the password or the key --------------------------------------------------


def _everything_shown(exc: BaseException) -> str:
    return " ".join([str(exc), repr(exc), describe_error(exc), "".join(traceback.format_exception(exc))])


@pytest.mark.parametrize("case", ["wrong password", "no such database", "refused", "missing table"])
def test_the_password_never_appears_in_an_error(case, postgres_server, any_store, no_table_db):
    wrong = "Wr0ng pass'w\\ord-" + pg.PASSWORD[-6:]
    conninfo = {
        "wrong password": postgres_server.conninfo("postgres", password=wrong),
        "no such database": postgres_server.conninfo("no_such_db"),
        "refused": postgres_server.conninfo("x", port=1),
        "missing table": no_table_db,
    }[case]
    store = any_store(conninfo, connect_timeout=0.2)
    for call in (store.check, store.index):
        with pytest.raises((SafeError, ConfigError)) as info:
            call()
        shown = _everything_shown(info.value)
        assert pg.PASSWORD not in shown and wrong not in shown and KEY not in shown
        assert "password=" not in shown
        assert describe_error(info.value).startswith(type(info.value).__name__ + ": ")  # its message, not just its type
    assert "Gen3WorkflowDbStore(127.0.0.1:" in repr(store) and pg.PASSWORD not in repr(store)


@pytest.mark.parametrize("call", ["check", "index"])
def test_an_unreachable_database_says_where_and_why(any_store, call):
    store = any_store("host=127.0.0.1 port=1 dbname=x user=u password=" + pg.PASSWORD, connect_timeout=0.5)
    with pytest.raises(DatabaseUnreachable) as info:
        getattr(store, call)()
    assert describe_error(info.value) == "DatabaseUnreachable: database unreachable: 127.0.0.1:1: Connection refused"


def test_a_wrong_password_says_so(postgres_server, any_store):
    store = any_store(postgres_server.conninfo("postgres", password="not-it"), connect_timeout=0.5)
    with pytest.raises(DatabaseUnreachable, match="password authentication failed"):
        store.index()


def test_a_bad_conninfo_is_a_config_error_without_echoing_it():
    with pytest.raises(ConfigError) as info:
        Gen3WorkflowDbStore(conninfo="host=x password='unterminated-" + pg.PASSWORD, encryption_key=KEY, hostname=HOST)
    assert pg.PASSWORD not in _everything_shown(info.value)


def test_conninfo_from_quotes_values_and_connects(postgres_server, pg_db):
    params = {
        "host": "db.example.org",
        "port": 5433,
        "user": "gen3 workflow",
        "password": "it's a \\secret",
        "dbname": "wf",
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/rds.pem",
    }
    assert conninfo_to_dict(conninfo_from(**params)) == params | {"port": "5433"}
    assert "sslmode" not in conninfo_from(host="h", user="u", password=None, dbname="d", sslmode=None)
    server = {"host": postgres_server.host, "port": postgres_server.port, "user": pg.SUPERUSER, "password": pg.PASSWORD}
    real = conninfo_from(**server, dbname=pg_db.dbname, sslmode="disable")
    with psycopg.connect(real) as conn:
        assert conn.execute("SELECT count(*) FROM system_key").fetchone() == (0,)
