"""Bot-key store in Gen3Workflow's own PostgreSQL table ``system_key``: where the service reads.

One row per key, as the service writes them (gen3-workflow ``models.py``, migration
``e1886270d9d2``): ``key_id`` (primary key), ``key_secret`` = the secret encrypted with
``Fernet(ENCRYPTION_KEY)`` as the token's text, ``user_id`` = the Gen3 user id (without
``-bot``), ``created_time``. The service hands a task the user's row with the greatest
``created_time``: rotator writes the IAM key's CreateDate there, so the newest key is first.
The migration makes ``created_time`` a ``timestamp without time zone`` (the model says
``timezone=True``): its type is read once, and a naive column gets the UTC wall time.

Each change is one transaction holding ``pg_advisory_xact_lock`` on the user, so concurrent
runners serialize per user. rotator never creates or migrates the service's schema.
No call here is an AWS call; errors never carry the connection string, a secret or the key.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import structlog
from cryptography.fernet import Fernet, InvalidToken
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from rotator.aws import SafeError
from rotator.errors import ConfigError
from rotator.keystore import StoreConflict, StoreUnreadable, WouldEmptyStore
from rotator.logs import remember_secret
from rotator.model import NewKey
from rotator.names import AmbiguousName, bot_user_name, parse_user_name

log = structlog.get_logger("rotator.keystore")

TABLE = "system_key"
COLUMNS = ("key_id", "key_secret", "user_id", "created_time")
NAIVE, AWARE = "timestamp without time zone", "timestamp with time zone"
LOCK_PREFIX = "gen3wf-rotator:"
CHECK_SAMPLE = 5
STATEMENT_TIMEOUT_MS = 30_000  # a lock held by a stuck runner, a slow server: an error, never a hang


_PASSWORD_PARAM = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class DatabaseUnreachable(SafeError):
    """No connection to the store's database (refused, timed out, lost): that job fails, nothing else."""


class DatabaseError(SafeError):
    """The database refused a statement; named by its error class and SQLSTATE, never its text."""


class StoreMisconfigured(ConfigError, SafeError):
    """The table or ENCRYPTION_KEY is not usable: exit 2 before any change (and a readable job error after)."""


@dataclass(frozen=True)
class _Row:
    key_id: str
    secret: str
    created: datetime


class Gen3WorkflowDbStore:
    name = "gen3workflow-db"
    permissions: tuple[str, ...] = ()  # no AWS call: the database grants SELECT, INSERT, UPDATE, DELETE on system_key

    def __init__(
        self, *, conninfo: str, encryption_key: str, hostname: str, pool_size: int = 4, connect_timeout: float = 10
    ) -> None:
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.Error:
            raise StoreMisconfigured("gen3workflow-db: the database connection settings are not a valid libpq conninfo") from None
        self._password = params.get("password") or None
        remember_secret(self._password)
        remember_secret(encryption_key)
        try:
            self._fernet = Fernet(encryption_key)
        except (ValueError, TypeError):
            raise StoreMisconfigured(
                "gen3workflow-db: ENCRYPTION_KEY is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
        if pool_size < 1 or connect_timeout <= 0:
            raise StoreMisconfigured("gen3workflow-db: pool_size must be at least 1 and connect_timeout positive")
        self.hostname = hostname
        self.endpoint = _endpoint(params)
        self._conninfo = conninfo
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._last_connect_error: str | None = None
        self._created_type: str | None = None
        self._checked = False

    def __repr__(self) -> str:
        return f"Gen3WorkflowDbStore({self.endpoint})"

    # --- the store contract ------------------------------------------------------------

    def index(self) -> Mapping[str, int]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT user_id, count(*) FROM {TABLE} GROUP BY user_id").fetchall()
        counts: dict[str, int] = {}
        for user_id, count in rows:
            if isinstance(user_id, str) and user_id:
                name = bot_user_name(self.hostname, user_id)
                counts[name] = counts.get(name, 0) + count
        return counts

    def stored_key_ids(self, user_name: str) -> frozenset[str]:
        return frozenset(row.key_id for row in self._read(user_name))

    def first_key_id(self, user_name: str) -> str | None:
        """The row the service hands out: the greatest ``created_time``."""
        rows = self._read(user_name)
        return rows[0].key_id if rows else None

    def entries(self, user_name: str) -> list[NewKey]:
        """The user's keys with their secrets, newest first (for migrating between stores)."""
        return [NewKey(user=user_name, key_id=r.key_id, created=r.created, secret=r.secret) for r in self._read(user_name)]

    def add_pending(self, key: NewKey) -> None:
        """Nothing: every row of the table is the service's to take (the newest first), so a key is
        written only by ``add``, once verified. A run killed meanwhile leaves an unstored key, which
        the orphan rule deletes after the grace period."""

    def add(self, key: NewKey) -> None:
        """Insert the key (or replace its secret and time if this user already has it), under the user's lock."""
        user_id = self.user_id(key.user)
        token = self._fernet.encrypt(key.secret.encode()).decode()
        with self._transaction(user_id) as conn:
            created = self._created_value(conn, key.created)
            self._validated_rows(conn, key.user, user_id)
            owner = conn.execute(f"SELECT user_id FROM {TABLE} WHERE key_id = %s", (key.key_id,)).fetchone()
            if owner is None:
                conn.execute(
                    f"INSERT INTO {TABLE} (key_id, key_secret, user_id, created_time) VALUES (%s, %s, %s, %s)",
                    (key.key_id, token, user_id, created),
                )
            elif owner[0] == user_id:
                conn.execute(
                    f"UPDATE {TABLE} SET key_secret = %s, created_time = %s WHERE key_id = %s", (token, created, key.key_id)
                )
            else:
                raise StoreConflict(f"{key.user}: key {key.key_id} is already stored for another user")

    def remove(self, user_name: str, key_ids: Collection[str], *, keep_one: bool = False) -> None:
        """Delete these rows of the user; unknown ids are ignored. ``keep_one``: never the last row."""
        user_id = self.user_id(user_name)
        ids = set(key_ids)
        with self._transaction(user_id) as conn:
            stored = {row.key_id for row in self._validated_rows(conn, user_name, user_id)}
            doomed = stored & ids
            if not doomed:
                return
            if keep_one and doomed == stored:
                raise WouldEmptyStore(f"{user_name}: forgetting {len(stored)} key(s) would leave the store empty")
            conn.execute(f"DELETE FROM {TABLE} WHERE user_id = %s AND key_id = ANY(%s)", (user_id, sorted(doomed)))

    # --- checks, connections ------------------------------------------------------------

    def check(self) -> None:
        """Before any change: the table is there and ENCRYPTION_KEY decrypts its rows (ConfigError otherwise).

        DatabaseUnreachable when the database cannot be reached: that is the job's failure, not the configuration's.
        """
        if self._checked:
            return
        with self._connection(direct=True) as conn:
            self._column_type(conn)
            tokens = [
                t for (t,) in conn.execute(f"SELECT key_secret FROM {TABLE} ORDER BY created_time DESC LIMIT %s", (CHECK_SAMPLE,))
            ]
            timezone = conn.execute("SELECT current_setting('TimeZone')").fetchone()[0]
        if tokens and not any(self._decrypts(t) for t in tokens):
            raise StoreMisconfigured(
                f"gen3workflow-db: ENCRYPTION_KEY does not decrypt the rows of {TABLE} on {self.endpoint}"
                f" (none of the {len(tokens)} newest): it must be the service's ENCRYPTION_KEY"
            )
        if self._created_type == NAIVE and timezone not in ("UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Zulu"):
            log.warning(
                "store.timezone_not_utc",
                store=self.name,
                timezone=timezone,
                hint="created_time has no time zone: rotator writes UTC wall time, the service's now() writes this zone's",
            )
        self._checked = True

    def user_id(self, user_name: str) -> str:
        """The Gen3 user id of a bot user name (StoreUnreadable for a name that is not a bot of this hostname)."""
        try:
            parsed = parse_user_name(user_name, hostname=self.hostname)
        except AmbiguousName:
            parsed = None
        if parsed is None or parsed.kind != "bot":
            raise StoreUnreadable(f"{user_name}: not a bot user name of {self.hostname}")
        return parsed.user_id

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=self._connect_timeout)

    def _open_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                store = self

                class _Connection(psycopg.Connection):
                    # The pool keeps its workers' connection errors to itself: remember the last reason.
                    @classmethod
                    def connect(cls, *args, **kwargs):
                        try:
                            conn = super().connect(*args, **kwargs)
                        except psycopg.OperationalError as exc:
                            store._last_connect_error = store._reason(exc)
                            raise
                        store._last_connect_error = None
                        return conn

                pool = ConnectionPool(
                    self._conninfo,
                    connection_class=_Connection,
                    min_size=0,
                    max_size=self._pool_size,
                    open=False,
                    name="gen3wf-rotator-store",
                    timeout=self._connect_timeout,  # waiting for a connection, whether pooled or new
                    reconnect_timeout=3 * self._connect_timeout,
                    check=ConnectionPool.check_connection,  # idle connections die between scheduled runs
                    configure=_configure,
                    kwargs=self._connect_kwargs(),
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    @contextmanager
    def _connection(self, *, direct: bool = False) -> Iterator[psycopg.Connection]:
        """A pooled connection (autocommit), or a direct one that tells why it failed; psycopg's errors become ours.

        psycopg's exceptions can carry the connection parameters (``exc.pgconn`` has the
        password): they are replaced, never chained, and only a scrubbed first line of
        libpq's reason is kept.
        """
        try:
            if direct:
                with psycopg.connect(self._conninfo, **self._connect_kwargs()) as conn:
                    _configure(conn)
                    yield conn
            else:
                with self._open_pool().connection() as conn:
                    yield conn
        except PoolTimeout:
            reason = self._last_connect_error or f"no connection within {self._connect_timeout:g}s"
            raise DatabaseUnreachable(f"database unreachable: {self.endpoint}: {reason}") from None
        except pg_errors.LockNotAvailable:
            waited = STATEMENT_TIMEOUT_MS // 1000
            raise StoreConflict(f"another writer held the user's lock for {waited}s on {self.endpoint}") from None
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None:  # no answer, or refused before a session: network, authentication, pg_hba
                raise DatabaseUnreachable(f"database unreachable: {self.endpoint}: {self._reason(exc)}") from None
            raise DatabaseError(f"database error on {self.endpoint}: {type(exc).__name__} ({exc.sqlstate})") from None
        except psycopg.Error as exc:
            if isinstance(exc, pg_errors.UndefinedTable):
                raise StoreMisconfigured(_missing_table(self.endpoint)) from None
            if isinstance(exc, pg_errors.InsufficientPrivilege):
                raise StoreMisconfigured(
                    f"gen3workflow-db: the database user may not use {TABLE} on {self.endpoint}:"
                    " it needs SELECT, INSERT, UPDATE and DELETE"
                ) from None
            raise DatabaseError(f"database error on {self.endpoint}: {type(exc).__name__} ({exc.sqlstate or 'client'})") from None

    def _connect_kwargs(self) -> dict[str, object]:
        return {
            "connect_timeout": max(2, round(self._connect_timeout)),  # libpq: whole seconds, at least 2
            "application_name": "gen3wf-rotator",
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }

    def _reason(self, exc: BaseException) -> str:
        """libpq's reason ("Connection refused", "password authentication failed"), scrubbed of any password."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
        text = _PASSWORD_PARAM.sub("password=***", text)
        if self._password:
            text = text.replace(self._password, "***")
        _, _, reason = text.rpartition(" failed: ")
        return " ".join((reason or text).split())[:200]

    @contextmanager
    def _transaction(self, user_id: str) -> Iterator[psycopg.Connection]:
        """One transaction holding the user's advisory lock (released at commit or rollback)."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s::text))", (LOCK_PREFIX + user_id,))
            yield conn

    def _column_type(self, conn: psycopg.Connection) -> str:
        if self._created_type is None:
            rows = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = %s AND table_schema = ("
                "   SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                "   WHERE c.oid = to_regclass(%s))",
                (TABLE, TABLE),
            ).fetchall()
            types = dict(rows)
            if not types:
                raise StoreMisconfigured(_missing_table(self.endpoint))
            where = f"gen3workflow-db: table {TABLE} on {self.endpoint}"
            missing = [c for c in COLUMNS if c not in types]
            if missing:
                raise StoreMisconfigured(f"{where} lacks column(s) {', '.join(missing)}")
            if types["created_time"] not in (NAIVE, AWARE):
                raise StoreMisconfigured(f"{where}: created_time is {types['created_time']}, not a timestamp")
            self._created_type = types["created_time"]
        return self._created_type

    def _created_value(self, conn: psycopg.Connection, created: datetime) -> datetime:
        instant = (created if created.tzinfo else created.replace(tzinfo=UTC)).astimezone(UTC)
        # psycopg sends an aware datetime as timestamptz, which PostgreSQL would turn into the
        # session zone's wall time in a naive column: send the naive UTC wall time instead.
        return instant.replace(tzinfo=None) if self._column_type(conn) == NAIVE else instant

    # --- reading rows -----------------------------------------------------------------

    def _read(self, user_name: str) -> list[_Row]:
        user_id = self.user_id(user_name)
        with self._connection() as conn:
            return self._validated_rows(conn, user_name, user_id)

    def _validated_rows(self, conn: psycopg.Connection, user_name: str, user_id: str) -> list[_Row]:
        """The user's rows, decrypted, in the service's order; StoreUnreadable (naming no value) if any is bad.

        One bad row makes the user unreadable: the user is left alone, never "repaired".
        """
        rows = conn.execute(
            f"SELECT key_id, key_secret, created_time FROM {TABLE} WHERE user_id = %s ORDER BY created_time DESC, key_id DESC",
            (user_id,),
        ).fetchall()
        result = []
        for n, (key_id, token, created) in enumerate(rows):
            if not isinstance(key_id, str) or not (16 <= len(key_id) <= 128) or not key_id.isalnum():
                raise StoreUnreadable(f"{user_name}: row {n}: key_id is not a key id")
            if not isinstance(created, datetime):
                raise StoreUnreadable(f"{user_name}: row {n}: created_time is not a time")
            secret = self._decrypt(token)
            if secret is None:
                raise StoreUnreadable(f"{user_name}: row {n}: key_secret does not decrypt with ENCRYPTION_KEY")
            remember_secret(secret)
            created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
            result.append(_Row(key_id=key_id, secret=secret, created=created))
        return result

    def _decrypt(self, token: object) -> str | None:
        if not isinstance(token, str) or not token:
            return None
        try:
            secret = self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, UnicodeError, ValueError, TypeError):
            return None
        return secret or None

    def _decrypts(self, token: object) -> bool:
        return self._decrypt(token) is not None


def _configure(conn: psycopg.Connection) -> None:
    conn.autocommit = True  # single reads need no transaction; changes open one explicitly
    timeout = str(STATEMENT_TIMEOUT_MS)
    conn.execute("SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)", (timeout, timeout))


def _endpoint(params: Mapping[str, object]) -> str:
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}"


def _missing_table(endpoint: str) -> str:
    return (
        f"gen3workflow-db: table {TABLE} not found on {endpoint}: run gen3-workflow's migrations"
        " (alembic upgrade head) first; rotator never creates or migrates the service's schema"
    )


def conninfo_from(
    *,
    host: str,
    port: int = 5432,
    user: str,
    password: str | None,
    dbname: str,
    sslmode: str | None = None,
    sslrootcert: str | None = None,
) -> str:
    """A libpq connection string (values quoted by psycopg). It holds the password: never log it."""
    params = {"host": host, "port": port, "user": user, "password": password, "dbname": dbname}
    params |= {"sslmode": sslmode, "sslrootcert": sslrootcert}
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None and v != ""})
