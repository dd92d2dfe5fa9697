"""A throwaway PostgreSQL, started from the installed binaries: for ``rotator demo --store
gen3workflow-db``, the tests (tests/pg.py) and the fault-injection suite.

Debian's ``postgresql`` package puts ``initdb`` and ``postgres`` in ``/usr/lib/postgresql/<version>/bin``;
``initdb`` refuses to run as root, so as root both run as the ``postgres`` system user (``setpriv``
execs, so the server's pid is ours to stop). The cluster lives in a temp dir, listens on a free
loopback port (password auth) and a unix socket (trust, for setting up), with fsync off (about a
second to start), and is deleted when stopped.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_PACKAGE = "postgresql"
SERVER_USER = "postgres"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 30

# gen3-workflow's table as its migration e1886270d9d2 creates it (sa.DateTime: without time zone),
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


class PostgresUnavailable(Exception):
    """PostgreSQL cannot be started here; the message is one line saying why (and what to install)."""


class BinariesMissing(PostgresUnavailable):
    """initdb/postgres (or, as root, the ``postgres`` user or setpriv) are not installed."""


@dataclass(frozen=True)
class Binaries:
    initdb: str
    postgres: str
    run_as: pwd.struct_passwd | None
    """The server's system user when we are root (initdb refuses root), else None."""
    setpriv: str | None

    def command(self, argv: list[str]) -> list[str]:
        if self.run_as is None:
            return argv
        account = self.run_as
        return [str(self.setpriv), f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", *argv]


def find_binaries() -> Binaries:
    """initdb and postgres, newest version first; BinariesMissing naming the Debian package otherwise."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    bindir = Path(found[-1]).parent if found else None
    if bindir is None and shutil.which("postgres") and shutil.which("initdb"):
        bindir = Path(str(shutil.which("postgres"))).parent
    if bindir is None or not (bindir / "initdb").is_file():
        raise BinariesMissing(f"PostgreSQL's server (initdb, postgres) is not installed: apt-get install {DEBIAN_PACKAGE}")
    if os.geteuid() != 0:
        return Binaries(str(bindir / "initdb"), str(bindir / "postgres"), None, None)
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise BinariesMissing(
            f"as root, initdb needs the '{SERVER_USER}' system user (apt-get install {DEBIAN_PACKAGE} creates it)"
        ) from None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise BinariesMissing("as root, starting PostgreSQL as its own user needs setpriv: apt-get install util-linux")
    return Binaries(str(bindir / "initdb"), str(bindir / "postgres"), account, setpriv)


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in Path(path).parent.parent.name.split(".") if p.isdigit())


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


@dataclass
class Cluster:
    """A running server: the superuser has ``password`` over TCP and needs none over the socket."""

    host: str
    port: int
    socket_dir: str
    password: str
    process: subprocess.Popen
    workdir: str
    log_path: str
    _stopped: bool = field(default=False, repr=False)

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """The superuser over the unix socket (trust): for setting up only."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def admin(self, dbname: str = "postgres"):
        """An autocommit superuser connection over the unix socket."""
        import psycopg

        return psycopg.connect(self.admin_conninfo(dbname), autocommit=True)

    def conninfo(self, dbname: str = "postgres", **overrides: object) -> str:
        """The superuser over TCP with its password (what a deployment does)."""
        from psycopg.conninfo import make_conninfo

        params = {"host": self.host, "port": self.port, "user": SUPERUSER, "password": self.password, "dbname": dbname}
        params |= overrides
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None})

    def log_tail(self, size: int = 2000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and delete its files; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: no waiting for clients
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(binaries: Binaries, *, password: str | None = None, prefix: str = "rotator-pg-") -> Cluster:
    """Initialise and start a cluster; PostgresUnavailable (one line) when it cannot."""
    import psycopg

    password = password or "pg-" + secrets.token_urlsafe(18)
    workdir = tempfile.mkdtemp(prefix=prefix, dir=_temp_base(binaries.run_as))
    data, pwfile, log_path = f"{workdir}/data", f"{workdir}/pwfile", f"{workdir}/server.log"
    Path(pwfile).write_text(password + "\n")
    os.chmod(pwfile, 0o600)
    if binaries.run_as is not None:
        for path in (workdir, pwfile):
            os.chown(path, binaries.run_as.pw_uid, binaries.run_as.pw_gid)
    initdb = binaries.command([binaries.initdb, "-D", data, "-U", SUPERUSER, f"--pwfile={pwfile}", "-A", "scram-sha-256",
                               "--auth-local=trust", "--no-sync", "-E", "UTF8", "--locale=C"])
    done = subprocess.run(initdb, capture_output=True, text=True, timeout=120)
    os.unlink(pwfile)
    if done.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    port = _free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": workdir,
        "fsync": "off",  # a throwaway cluster: durability buys nothing, costs start-up and commits
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "TimeZone": "UTC",
    }
    settings = [arg for name, value in options.items() for arg in ("-c", f"{name}={value}")]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(binaries.command([binaries.postgres, "-D", data, "-p", str(port), *settings]),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    cluster = Cluster("127.0.0.1", port, workdir, password, process, workdir, log_path)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            psycopg.connect(cluster.admin_conninfo(), connect_timeout=2).close()
            return cluster
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                last = (cluster.log_tail().strip().splitlines() or ["no output"])[-1]
                cluster.stop()
                raise PostgresUnavailable(f"postgres did not start: {last}") from None
            time.sleep(0.05)


# --- the demo's database: gen3-workflow's, as its migration leaves it ---------------------------

DATABASE = "gen3workflow"
DATABASE_USER = "gen3workflow"


@dataclass(frozen=True)
class Postgres:
    """Where the service's database is, and its own user's credentials."""

    host: str
    port: int
    database: str
    user: str
    password: str


@contextmanager
def postgres(binaries: Binaries) -> Iterator[Postgres]:
    """A running server with gen3-workflow's database and ``system_key`` table (the migration's
    column type), owned by the service's own database user; stopped and deleted on exit."""
    from psycopg import sql

    cluster = start(binaries, prefix="rotator-demo-pg-")
    try:
        server = Postgres(cluster.host, cluster.port, DATABASE, DATABASE_USER, "demo-" + secrets.token_urlsafe(18))
        with cluster.admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(DATABASE_USER), sql.Literal(server.password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(DATABASE_USER)))
        with cluster.admin(DATABASE) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(DATABASE_USER)))  # the service's user owns its table
            conn.execute(SYSTEM_KEY_DDL.format(created_type=CREATED_TYPES["timestamp"]))
        yield server
    finally:
        cluster.stop()
