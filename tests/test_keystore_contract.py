"""One store contract, run against every bot-key store: Secrets Manager (moto) and gen3workflow-db
(a real PostgreSQL, both ``created_time`` column types). What the executor relies on: adds and
removes that lose no writer's entry, newest first, keep_one, a cheap index, bad stored values
that are errors naming no value, and an unreachable backend that is an error, never a hang."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pg
import pytest
from botocore.config import Config
from cryptography.fernet import Fernet

from helpers import HOST, T0, days
from rotator.aws import describe_error
from rotator.keystore import StoreUnreadable, WouldEmptyStore
from rotator.keystore.gen3workflow_db import Gen3WorkflowDbStore
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import NewKey
from rotator.names import bot_user_name, parse_user_name

postgres_server = pg.postgres_server  # the fixture

PREFIX = "gen3wf-rotator/gen3.example.org/bot-keys/"
USER, OTHER = bot_user_name(HOST, "1"), bot_user_name(HOST, "2")
OLD, NEW, THIRD = "AKIAOLDOLDOLDOLD0001", "AKIANEWNEWNEWNEW0002", "AKIATHIRDTHIRDTHIRD3"
ENCRYPTION_KEY = Fernet.generate_key().decode()
PLANTED = "do-not-print-planted-secret"


def key(key_id: str, age_days: float = 0, user: str = USER) -> NewKey:
    return NewKey(user=user, key_id=key_id, created=T0 + days(age_days), secret=f"secret-of-{key_id}")


class SecretsManagerBackend:
    name = "secretsmanager"
    malformations = ("not-json", "not-a-list", "no-secret", "bad-created")

    def __init__(self, aws) -> None:
        self.sm = aws.client("secretsmanager")

    def store(self) -> SecretsManagerStore:
        return SecretsManagerStore(self.sm, prefix=PREFIX)

    def plant(self, user: str, malformation: str) -> None:
        entry = {"access_key_id": OLD, "secret_access_key": PLANTED, "created": T0.isoformat()}
        value = {
            "not-json": PLANTED + "{",
            "not-a-list": json.dumps({"sekrit": PLANTED}),
            "no-secret": json.dumps([{"access_key_id": OLD, "created": T0.isoformat(), "x": PLANTED}]),
            "bad-created": json.dumps([entry | {"created": "yesterday " + PLANTED}]),
        }[malformation]
        self.sm.create_secret(Name=PREFIX + user, SecretString=value)

    def raw(self, user: str) -> object:
        return self.sm.get_secret_value(SecretId=PREFIX + user, VersionStage="AWSCURRENT")["SecretString"]

    def close(self) -> None:
        pass


class DbBackend:
    name = "gen3workflow-db"
    malformations = ("not-a-token", "other-key", "bad-key-id", "empty-secret")

    def __init__(self, db: pg.Database) -> None:
        self.db = db
        self._stores: list[Gen3WorkflowDbStore] = []

    def store(self) -> Gen3WorkflowDbStore:
        store = Gen3WorkflowDbStore(conninfo=self.db.conninfo, encryption_key=ENCRYPTION_KEY, hostname=HOST, connect_timeout=5)
        self._stores.append(store)
        return store

    def plant(self, user: str, malformation: str) -> None:
        fernet = Fernet(ENCRYPTION_KEY)
        key_id, token = OLD, fernet.encrypt(PLANTED.encode()).decode()
        if malformation == "not-a-token":
            token = PLANTED
        elif malformation == "other-key":
            token = Fernet(Fernet.generate_key()).encrypt(PLANTED.encode()).decode()
        elif malformation == "bad-key-id":
            key_id = "x-" + PLANTED
        elif malformation == "empty-secret":
            token = fernet.encrypt(b"").decode()
        user_id = parse_user_name(user, hostname=HOST).user_id
        with self.db.connect() as conn:
            conn.execute("INSERT INTO system_key (key_id, key_secret, user_id) VALUES (%s, %s, %s)", (key_id, token, user_id))

    def raw(self, user: str) -> object:
        with self.db.connect() as conn:
            return conn.execute("SELECT key_id, key_secret, created_time FROM system_key ORDER BY key_id").fetchall()

    def close(self) -> None:
        for store in self._stores:
            store.close()


@pytest.fixture(params=["secretsmanager", "db-timestamp", "db-timestamptz"])
def backend(request) -> Iterator[SecretsManagerBackend | DbBackend]:
    if request.param == "secretsmanager":
        made = SecretsManagerBackend(request.getfixturevalue("aws"))
    else:
        request.getfixturevalue("postgres_server")
        db = pg.database(request.param.removeprefix("db-"))
        db.reset()
        made = DbBackend(db)
    yield made
    made.close()


# --- adding, reading, removing --------------------------------------------------------


def test_added_keys_are_stored_newest_first_and_indexed(backend):
    store = backend.store()
    store.add(key(OLD, 0))
    store.add(key(NEW, 15))
    assert store.stored_key_ids(USER) == {OLD, NEW}
    assert store.first_key_id(USER) == NEW
    assert store.index() == {USER: 2}


def test_first_is_the_newest_whatever_the_order_of_adding(backend):
    store = backend.store()
    store.add(key(NEW, 15))
    store.add(key(OLD, 0))
    assert store.first_key_id(USER) == NEW


def test_a_pending_key_is_not_taken_by_readers(backend):
    store = backend.store()
    store.add(key(OLD, 0))
    store.add_pending(key(NEW, 15))
    assert store.first_key_id(USER) == OLD
    assert store.stored_key_ids(USER) == {OLD}
    store.add(key(NEW, 15))  # verified: now readers take it
    assert store.first_key_id(USER) == NEW
    assert store.stored_key_ids(USER) == {OLD, NEW}


def test_adding_a_key_again_keeps_one_entry(backend):
    store = backend.store()
    store.add(key(OLD, 0))
    store.add(key(OLD, 0))
    assert store.stored_key_ids(USER) == {OLD}
    assert store.index() == {USER: 1}


def test_remove_ignores_unknown_ids_and_users(backend):
    store = backend.store()
    store.add(key(OLD, 0))
    store.add(key(NEW, 15))
    store.remove(USER, {OLD, "AKIAUNKNOWNUNKNOWN01"})
    assert store.stored_key_ids(USER) == {NEW}
    assert store.first_key_id(USER) == NEW
    assert store.index() == {USER: 1}
    store.remove(OTHER, {NEW})  # nothing stored for it: nothing to do
    assert store.stored_key_ids(USER) == {NEW}


def test_keep_one_refuses_to_leave_the_store_empty(backend):
    store = backend.store()
    store.add(key(OLD, 0))
    store.add(key(NEW, 15))
    store.remove(USER, {OLD}, keep_one=True)
    with pytest.raises(WouldEmptyStore):
        store.remove(USER, {NEW}, keep_one=True)
    assert store.stored_key_ids(USER) == {NEW}
    store.remove(USER, {NEW})  # without keep_one it may
    assert store.stored_key_ids(USER) == frozenset()
    assert store.first_key_id(USER) is None
    assert store.index().get(USER, 0) == 0


def test_an_unknown_user_has_nothing_stored(backend):
    store = backend.store()
    assert store.stored_key_ids(USER) == frozenset()
    assert store.first_key_id(USER) is None
    assert store.index() == {}


def test_the_index_counts_per_user(backend):
    store = backend.store()
    store.add(key(OLD, 0))
    store.add(key(NEW, 1))
    store.add(key(THIRD, 2, user=OTHER))
    assert store.index() == {USER: 2, OTHER: 1}
    assert store.stored_key_ids(OTHER) == {THIRD}


# --- bad stored values ------------------------------------------------------------------


@pytest.mark.parametrize("n", range(4))
def test_a_bad_stored_value_is_unreadable_without_echoing_it_and_left_as_is(backend, n):
    malformation = backend.malformations[n]
    store = backend.store()
    backend.plant(USER, malformation)
    store.add(key(THIRD, 1, user=OTHER))
    before = backend.raw(USER)
    calls = {
        "stored_key_ids": lambda: store.stored_key_ids(USER),
        "first_key_id": lambda: store.first_key_id(USER),
        "add": lambda: store.add(key(NEW, 15)),
        "remove": lambda: store.remove(USER, {OLD}),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnreadable) as info:
            call()
        message = f"{info.value} {describe_error(info.value)} {info.value!r}"
        assert PLANTED not in message, (malformation, name)
    assert backend.raw(USER) == before  # never "repaired"
    assert store.stored_key_ids(OTHER) == {THIRD}  # the others go on


# --- concurrent writers -------------------------------------------------------------------


def test_concurrent_writers_lose_no_entry(backend):
    """Four runners add a key each for the same user at once: all four are stored, the newest first."""
    stores = [backend.store() for _ in range(4)]
    ids = [f"AKIACONCURRENT{n:06d}" for n in range(4)]
    start = threading.Barrier(len(stores))

    def write(n: int) -> None:
        start.wait()
        stores[n].add(key(ids[n], n))

    with ThreadPoolExecutor(len(stores)) as pool:
        list(pool.map(write, range(len(stores))))
    assert stores[0].stored_key_ids(USER) == set(ids)
    assert stores[0].first_key_id(USER) == ids[-1]


def test_concurrent_keep_one_removals_never_empty_the_store(backend):
    """Two runners each retire a different one of the user's two keys: one wins, the other is refused."""
    first, second = backend.store(), backend.store()
    first.add(key(OLD, 0))
    first.add(key(NEW, 1))
    start = threading.Barrier(2)

    def retire(store, key_id):
        start.wait()
        try:
            store.remove(USER, {key_id}, keep_one=True)
        except WouldEmptyStore:
            return "refused"
        return "removed"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(retire, (first, second), (OLD, NEW)))
    assert outcomes == ["refused", "removed"]
    assert len(first.stored_key_ids(USER)) == 1


# --- an unreachable backend ----------------------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


@pytest.mark.parametrize("kind", ["secretsmanager", "gen3workflow-db"])
@pytest.mark.parametrize("answer", ["refused", "silent"])
def test_an_unreachable_backend_is_an_error_never_a_hang(kind, answer, request, black_hole):
    port = closed_port() if answer == "refused" else black_hole
    if kind == "secretsmanager":
        request.getfixturevalue("aws")  # moto is active; it lets this endpoint through to the network
        client = boto3.session.Session(region_name="us-east-1").client(
            "secretsmanager",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=Config(connect_timeout=0.3, read_timeout=0.3, retries={"total_max_attempts": 1}),
        )
        store = SecretsManagerStore(client, prefix=PREFIX)
        close = client.close
    else:
        conninfo = f"host=127.0.0.1 port={port} user=postgres password={pg.PASSWORD} dbname=x"
        store = Gen3WorkflowDbStore(conninfo=conninfo, encryption_key=ENCRYPTION_KEY, hostname=HOST, connect_timeout=0.3)
        close = store.close
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as info:  # noqa: B017 - each store raises its transport's error
            store.stored_key_ids(USER)
        assert time.monotonic() - started < 3, "bounded by the timeouts"
        assert pg.PASSWORD not in f"{info.value} {info.value!r} {describe_error(info.value)}"
    finally:
        close()
