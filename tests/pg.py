"""A throwaway PostgreSQL server for the test session, started from the installed binaries.

Debian's ``postgresql`` package puts ``initdb`` and ``postgres`` in ``/usr/lib/postgresql/<v>/bin``.
``initdb`` refuses to run as root, so as root both run as the ``postgres`` system user (setpriv
execs, so the server's pid is ours to signal). The cluster lives in a temp dir, listens on a
free loopback port (password auth) and a unix socket (trust), with fsync off: ~1 s to start.

Fixtures: ``postgres_server`` (the running server), ``postgres`` (session, parametrized over
the two ``created_time`` column types: a database holding an empty ``system_key`` table, its
``.conninfo`` to connect) and ``pg_db`` (the same, emptied before each test). A test module
binds the ones it uses (``postgres_server = pg.postgres_server``); however many modules do,
there is one server and one database per column type. Without the binaries a laptop skips
these tests; with ``CI`` or ``REQUIRE_TEST_BINARIES`` set they fail instead (``require_binary``).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from conftest import require_binary

SUPERUSER = "postgres"
PASSWORD = "pg-" + secrets.token_urlsafe(18)  # per session; tests check that no error ever shows it

# The table as gen3-workflow's migration e1886270d9d2 creates it (sa.DateTime: without time zone),
# and as its model declares it (DateTime(timezone=True)).
CREATED_TYPES = {"timestamp": "TIMESTAMP WITHOUT TIME ZONE", "timestamptz": "TIMESTAMP WITH TIME ZONE"}
SYSTEM_KEY_DDL = """
CREATE TABLE system_key (
    key_id VARCHAR NOT NULL,
    key_secret VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    created_time {created_type} DEFAULT now() NOT NULL,
    CONSTRAINT system_key_pkey PRIMARY KEY (key_id)
)
"""


@dataclass
class Server:
    host: str
    port: int
    socket_dir: str
    process: subprocess.Popen
    workdir: str
    log_path: str
    _stopped: bool = field(default=False, repr=False)

    def conninfo(self, dbname: str = "postgres", **overrides) -> str:
        """TCP with the superuser's password (what a deployment does)."""
        params = {"host": self.host, "port": self.port, "user": SUPERUSER, "password": PASSWORD, "dbname": dbname}
        params |= overrides
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None})

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """An autocommit superuser connection over the unix socket."""
        return psycopg.connect(host=self.socket_dir, port=self.port, user=SUPERUSER, dbname=dbname, autocommit=True)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: no waiting for clients
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


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


def bindir() -> str:
    """Where ``postgres`` and ``initdb`` are, newest version first; skipped/failed as require_binary says."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: _version(Path(p).parent.parent.name))
    postgres = require_binary(found[-1] if found else "postgres")
    return str(Path(postgres).parent)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def _as_server_user(argv: list[str]) -> tuple[list[str], pwd.struct_passwd | None]:
    if os.geteuid() != 0:
        return argv, None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        require_binary("a 'postgres' system user (initdb refuses root)")
        raise
    setpriv = require_binary("setpriv")
    return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", *argv], account


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _temp_base(account: pwd.struct_passwd | None) -> str:
    """TMPDIR, unless the server user cannot reach it or a socket path there would be too long (~107 bytes)."""
    base = tempfile.gettempdir()
    reachable = account is None or all(
        os.stat(p).st_mode & 0o001 or os.stat(p).st_uid == account.pw_uid for p in [base, *map(str, Path(base).parents)]
    )
    return base if reachable and len(base) < 60 else "/tmp"


def start_server() -> Server:
    bins = bindir()
    _, account = _as_server_user([])
    workdir = tempfile.mkdtemp(prefix="rotator-pg-", dir=_temp_base(account))
    data, pwfile, log_path = f"{workdir}/data", f"{workdir}/pwfile", f"{workdir}/server.log"
    Path(pwfile).write_text(PASSWORD + "\n")
    os.chmod(pwfile, 0o600)
    if account is not None:
        for path in (workdir, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
    initdb_args = ["-D", data, "-U", SUPERUSER, f"--pwfile={pwfile}", "-A", "scram-sha-256", "--auth-local=trust"]
    initdb, _ = _as_server_user([f"{bins}/initdb", *initdb_args, "--no-sync", "-E", "UTF8", "--locale=C"])
    done = subprocess.run(initdb, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"initdb failed: {done.stderr[-2000:]}")
    port = _free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": workdir,
        "fsync": "off",  # a throwaway cluster: durability buys nothing, costs startup and commits
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "TimeZone": "UTC",
    }
    settings = [arg for name, value in options.items() for arg in ("-c", f"{name}={value}")]
    argv, _ = _as_server_user([f"{bins}/postgres", "-D", data, "-p", str(port), *settings])
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(host="127.0.0.1", port=port, socket_dir=workdir, process=process, workdir=workdir, log_path=log_path)
    deadline = time.monotonic() + 15
    while True:
        try:
            server.admin().close()
            return server
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_path).read_text(errors="replace")[-2000:]
                server.stop()
                pytest.fail(f"postgres did not start: {tail}")
            time.sleep(0.05)


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
