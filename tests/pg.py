"""The test session's throwaway PostgreSQL server (rotator/throwaway_pg.py starts it).

Fixtures: ``postgres_server`` (the running server), ``postgres`` (session, parametrized over
the two ``created_time`` column types: a database holding an empty ``system_key`` table, its
``.conninfo`` to connect) and ``pg_db`` (the same, emptied before each test). A test module
binds the ones it uses (``postgres_server = pg.postgres_server``); however many modules do,
there is one server and one database per column type. Without the binaries a laptop skips
these tests; with ``CI`` or ``REQUIRE_TEST_BINARIES`` set they fail instead (``require_binary``).
"""

from __future__ import annotations

import atexit
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from conftest import require_binary
from rotator import throwaway_pg
from rotator.throwaway_pg import CREATED_TYPES, SUPERUSER, SYSTEM_KEY_DDL  # noqa: F401 - the tests' names for them

PASSWORD = "pg-" + secrets.token_urlsafe(18)  # per session; tests check that no error ever shows it


Server = throwaway_pg.Cluster


@dataclass(frozen=True)
class Database:
    """A database holding gen3-workflow's ``system_key`` table with one ``created_time`` type."""

    server: Server
    dbname: str
    created_type: str
    """``timestamp`` (as the migration makes it) or ``timestamptz`` (as the model says)."""

    @property
    def conninfo(self) -> str:
        return self.server.conninfo(self.dbname)

    @property
    def password(self) -> str:
        return PASSWORD

    def connect(self) -> psycopg.Connection:
        return self.server.admin(self.dbname)

    def reset(self) -> None:
        with self.connect() as conn:
            conn.execute("TRUNCATE system_key")


_lock = threading.Lock()
_server: Server | None = None
_databases: dict[str, Database] = {}


def binaries() -> throwaway_pg.Binaries:
    """initdb and postgres (and, as root, the way to run them); skipped/failed as require_binary says."""
    try:
        return throwaway_pg.find_binaries()
    except throwaway_pg.BinariesMissing as exc:
        require_binary(f"PostgreSQL ({exc})")
        raise


def bindir() -> str:
    """Where ``postgres`` and ``initdb`` are; skipped/failed as require_binary says."""
    return binaries().postgres.rsplit("/", 1)[0]


def start_server() -> Server:
    try:
        return throwaway_pg.start(binaries(), password=PASSWORD)
    except throwaway_pg.PostgresUnavailable as exc:
        pytest.fail(str(exc))


def shared_server() -> Server:
    global _server
    with _lock:
        if _server is None or _server._stopped:
            _server = start_server()
            atexit.register(_server.stop)  # also when the session is cut short
        return _server


def database(created_type: str) -> Database:
    """The session's database for this ``created_time`` type, created once with an empty table."""
    server = shared_server()
    with _lock:
        if created_type not in _databases:
            dbname = f"gen3workflow_{created_type}"
            with server.admin() as conn:
                conn.execute(f"CREATE DATABASE {dbname}")
            with server.admin(dbname) as conn:
                conn.execute(SYSTEM_KEY_DDL.format(created_type=CREATED_TYPES[created_type]))
            _databases[created_type] = Database(server=server, dbname=dbname, created_type=created_type)
        return _databases[created_type]


def _stop_shared() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
        _server = None
        _databases.clear()


@pytest.fixture(scope="session")
def postgres_server(request) -> Server:
    request.addfinalizer(_stop_shared)
    return shared_server()


@pytest.fixture(scope="session", params=sorted(CREATED_TYPES))
def postgres(request, postgres_server) -> Database:
    """A database with gen3-workflow's ``system_key`` table; ``.conninfo`` connects to it."""
    return database(request.param)


@pytest.fixture
def pg_db(postgres) -> Iterator[Database]:
    postgres.reset()
    yield postgres
