"""Where the suite seeds bot keys and where it judges them: one view per rotator store (``--store``).

The invariants (chaos/invariants.py) never read a store themselves: they ask a view what a
reader of that store — the service — would see for each bot user:

* :class:`SecretsManagerView` (``secretsmanager``, the default): one secret per bot user,
  ``gen3wf-rotator/<hostname>/bot-keys/<iam user name>``, value a JSON list of
  ``{"access_key_id", "secret_access_key", "created"}`` newest first; read as
  ``GetSecretValue(VersionStage=AWSCURRENT)`` does, straight from moto's backend.
* :class:`DbView` (``gen3workflow-db``): gen3-workflow's own ``system_key`` table on a
  throwaway PostgreSQL (rotator/throwaway_pg.py starts it, once for the whole suite), one fresh database
  per scenario, ``created_time`` alternately ``timestamp`` (as the service's migration makes
  it) and ``timestamptz`` (as its model declares it). Rows are seeded and read as the service
  does: ``key_secret`` = ``Fernet(ENCRYPTION_KEY).encrypt(secret)``, ``user_id`` the Gen3 user
  id, and the key handed out is the row with the greatest ``created_time``
  (``get_system_key``; rows tied at the greatest time may each be the one handed out, so each
  must be live). rotator connects as a role that may only SELECT, INSERT, UPDATE and DELETE
  on ``system_key``; the connection is direct, not through the proxy.

  A statement trigger (in schema ``chaos``, not part of the service's table definition)
  counts the table's writes and sends ``NOTIFY chaos_write`` with each: the suite judges the
  invariants after every committed write as well as after every AWS request. Armed with
  :meth:`DbView.arm_hold`, it holds the n-th write's transaction open (``pg_sleep``) so that
  set b can SIGKILL the runner mid-transaction (:meth:`DbView.kill_when_held`).

A view's :meth:`read_bots` returns a :class:`StoreRead` per bot user: the entries in the
reader's order, the entries a reader may hand out *now* (``first``) and what is wrong with
the stored value (``problems``, as violation kinds).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rotator import throwaway_pg

REPO = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STORES = ("secretsmanager", "gen3workflow-db")
CREATED_TYPES = ("timestamp", "timestamptz")
RUNNER_APPS = "gen3wf-rotator%"  # application_name of rotator's connections (and the reference's)
SUITE_APP = "rotator-chaos"


@dataclass(frozen=True)
class Entry:
    key_id: str
    secret: str | None
    """None: the stored secret cannot be read (a Fernet token that does not decrypt)."""
    created: datetime | None = None


@dataclass
class StoreRead:
    entries: list[Entry] = field(default_factory=list)
    """What the store holds for the user, in the reader's order (newest first)."""
    first: list[Entry] = field(default_factory=list)
    """What a reader may hand out now: none, one, or (rows tied at the greatest created_time) several."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(violation kind, what) for a malformed stored value."""


def _aware(value) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- Secrets Manager -------------------------------------------------------------------------


def read_store(sm_backend, name: str) -> tuple[list[dict] | None, str | None]:
    """(entries, problem) of a store secret as a reader with VersionStage=AWSCURRENT sees it."""
    secret = sm_backend.secrets.get(name)
    if secret is None or getattr(secret, "is_deleted", lambda: False)():
        return None, None
    current = [v for v in secret.versions.values() if "AWSCURRENT" in v.get("version_stages", [])]
    if not current:
        return None, "no version labelled AWSCURRENT"
    problem = None
    if len(current) > 1:
        problem = f"{len(current)} versions labelled AWSCURRENT (moto keeps a stale default version; see TOOLS.md)"
    raw = current[0].get("secret_string")  # GetSecretValue(VersionStage=AWSCURRENT) returns the first
    if raw is None:
        return None, "AWSCURRENT has no SecretString"
    try:
        entries = json.loads(raw)
    except ValueError:
        return None, "AWSCURRENT value is not JSON"
    if not isinstance(entries, list):
        return None, "AWSCURRENT value is not a JSON list"
    for e in entries:
        if not (
            isinstance(e, dict)
            and isinstance(e.get("access_key_id"), str)
            and isinstance(e.get("secret_access_key"), str)
            and isinstance(e.get("created"), str)
        ):
            return None, "an entry is not {access_key_id, secret_access_key, created} strings"
    return entries, problem


def _store_description(user: str, key_ids: list[str]) -> str:
    # The rotator's store writes this hint (key ids only, never secrets); seeded stores look the same.
    return f"Gen3Workflow bot keys of {user}, managed by gen3wf-rotator; key ids: {','.join(key_ids)}"


def write_store_secret(sm, secret_name: str, user: str, entries: list[dict], *, extra_tags=()) -> None:
    """Seed one Secrets Manager store secret (entries: access_key_id, secret_access_key, created datetime)."""
    entries = sorted(entries, key=lambda e: e["created"], reverse=True)
    value = [{"access_key_id": e["access_key_id"], "secret_access_key": e["secret_access_key"], "created": e["created"].isoformat()}
             for e in entries]
    sm.create_secret(
        Name=secret_name,
        SecretString=json.dumps(value),
        Description=_store_description(user, [e["access_key_id"] for e in entries]),
        Tags=[{"Key": "managed-by", "Value": "gen3wf-rotator"}, {"Key": "gen3wf-bot-user", "Value": user}, *extra_tags],
    )


class SecretsManagerView:
    """rotator's default store; the view reads moto's backend as GetSecretValue(AWSCURRENT) would."""

    name = "secretsmanager"
    first_noun = "store's first entry"
    bots_in_secretsmanager = True
    has_writes = False
    has_decoy_rows = False
    kinds = ("store-AWSCURRENT",)

    def env(self) -> dict[str, str]:
        return {}  # rotator's default: the suite sets nothing, so any rotator version runs

    def hidden(self) -> set[str]:
        return set()

    def begin(self, label: str, created_type: str | None = None) -> dict[str, str]:
        return {}

    def seeded(self) -> None:
        pass

    def end(self, keep: Path | None) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "store secretsmanager"

    def seed_bot(self, sm, bot_name: str, user_id: str, secret_name: str, entries: list[dict], rng) -> None:
        if entries:
            write_store_secret(sm, secret_name, bot_name, entries)

    def seed_decoy(self, user_id: str, entries: list[dict], why: str) -> bool:
        return False  # the scenario's decoy store secrets are Secrets Manager secrets in either mode

    def read_bots(self, bots: Iterable) -> dict[str, StoreRead]:
        from moto.secretsmanager.models import secretsmanager_backends

        sm_backend = secretsmanager_backends[ACCOUNT_ID][REGION]
        reads = {}
        for bot in bots:
            entries, problem = read_store(sm_backend, bot.store_secret)
            read = StoreRead()
            if problem:
                kind = "store-AWSCURRENT" if "AWSCURRENT" in problem and entries is not None else "store-malformed"
                read.problems.append((kind, problem))
            read.entries = [Entry(e["access_key_id"], e["secret_access_key"], _parse_time(e["created"])) for e in entries or []]
            read.first = read.entries[:1]
            reads[bot.name] = read
        return reads

    def snapshot_decoys(self, subjects: Iterable[str]) -> dict[str, object]:
        return {}

    def quiesce(self, timeout: float = 30.0) -> bool:
        return True


def _parse_time(text: str) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(text))
    except (TypeError, ValueError):
        return None


# --- gen3-workflow's system_key table ----------------------------------------------------------


class StoreUnavailable(RuntimeError):
    """The store's backend cannot be set up (no PostgreSQL binaries, initdb failed, ...)."""


CHAOS_DDL = """
CREATE SCHEMA chaos;
CREATE SEQUENCE chaos.writes;
CREATE TABLE chaos.control (hold_at bigint);
INSERT INTO chaos.control VALUES (NULL);
CREATE FUNCTION chaos.count_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, chaos AS $$
DECLARE
    n bigint := nextval('chaos.writes');
    target bigint;
BEGIN
    SELECT hold_at INTO target FROM chaos.control;
    IF target IS NOT NULL AND n = target THEN
        PERFORM pg_sleep(25);  -- the suite kills the writer meanwhile (rotator's statement_timeout is 30 s)
    END IF;
    PERFORM pg_notify('chaos_write', TG_OP || ' #' || n);
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_count_write AFTER INSERT OR UPDATE OR DELETE ON public.system_key
    FOR EACH STATEMENT EXECUTE FUNCTION chaos.count_write();
"""


class DbView:
    """gen3-workflow's ``system_key`` table on one throwaway PostgreSQL, a fresh database per scenario."""

    name = "gen3workflow-db"
    first_noun = "newest row"
    bots_in_secretsmanager = False
    has_writes = True
    has_decoy_rows = True
    kinds = ()

    def __init__(self, workdir: Path, *, server=None) -> None:
        """``server``: a running throwaway_pg cluster to use (and leave running); default: start one, stopped by close()."""
        from cryptography.fernet import Fernet

        self._owns_server = server is None
        if server is None:
            try:
                server = throwaway_pg.start(throwaway_pg.find_binaries(), prefix="rotator-chaos-pg-")
            except throwaway_pg.PostgresUnavailable as exc:
                raise StoreUnavailable(f"cannot start PostgreSQL: {exc}") from None
            atexit.register(server.stop)  # also when the suite is cut short (stop is idempotent)
        self.server = server
        self.tag = secrets.token_hex(3)  # databases and role of this view, should several share a server
        self.role = f"gen3workflow_{self.tag}"
        self.key = Fernet.generate_key().decode()
        self.fernet = Fernet(self.key.encode())
        self.role_password = "chaos-db-" + secrets.token_urlsafe(18)
        self.files = Path(workdir) / "store"
        self.files.mkdir(parents=True, exist_ok=True)
        (self.files / "db-password").write_text(self.role_password + "\n")
        (self.files / "encryption-key").write_text(self.key + "\n")
        for f in self.files.iterdir():
            os.chmod(f, 0o600)
        self._lock = threading.RLock()
        self._conn = None
        self.dbname: str | None = None
        self.created_type: str | None = None
        self._count = 0
        self.on_write: Callable[[str], None] | None = None
        self._listener: threading.Thread | None = None
        self._stop_listening = threading.Event()
        with self.server.admin() as conn:
            conn.execute(f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.role_password}'")
        self.preflight_db = self._create_database(f"chaos_{self.tag}_preflight", "timestamp")

    # --- the settings rotator runs with ------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            "ROTATOR_BOT_KEYS__STORE": "gen3workflow-db",
            "ROTATOR_BOT_KEYS__DB__HOST": self.server.host,
            "ROTATOR_BOT_KEYS__DB__PORT": str(self.server.port),
            "ROTATOR_BOT_KEYS__DB__USER": self.role,
            "ROTATOR_BOT_KEYS__DB__DATABASE": self.dbname or self.preflight_db,
            "ROTATOR_BOT_KEYS__DB__PASSWORD_FILE": str(self.files / "db-password"),
            "ROTATOR_BOT_KEYS__DB__ENCRYPTION_KEY_FILE": str(self.files / "encryption-key"),
            "ROTATOR_BOT_KEYS__DB__SSLMODE": "disable",
        }

    def hidden(self) -> set[str]:
        return {self.key, self.role_password, self.server.password}

    def describe(self) -> str:
        return f"store gen3workflow-db (PostgreSQL {self.server.host}:{self.server.port}, a database per scenario)"

    # --- one database per scenario ---------------------------------------------------------------

    def _create_database(self, dbname: str, created_type: str) -> str:
        with self.server.admin() as conn:
            conn.execute(f"CREATE DATABASE {dbname}")
        with self.server.admin(dbname) as conn:
            conn.execute(throwaway_pg.SYSTEM_KEY_DDL.format(created_type=throwaway_pg.CREATED_TYPES[created_type]))
            conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON system_key TO {self.role}")
            conn.execute(CHAOS_DDL)
        return dbname

    def begin(self, label: str, created_type: str | None = None) -> dict[str, str]:
        """A fresh database with an empty table for the next scenario; the settings that name it."""
        self.end(None)
        self._count += 1
        self.created_type = created_type or CREATED_TYPES[self._count % 2]
        safe = "".join(c if c.isalnum() else "_" for c in label.lower())[:40]
        self.dbname = self._create_database(f"chaos_{self.tag}_{self._count:04d}_{safe}", self.created_type)
        with self._lock:
            self._conn = self.server.admin(self.dbname)
        self._stop_listening = threading.Event()
        self._listener = threading.Thread(target=self._listen, args=(self.dbname, self._stop_listening), daemon=True,
                                          name="chaos-db-listener")
        self._listener.start()
        return {"ROTATOR_BOT_KEYS__DB__DATABASE": self.dbname}

    def seeded(self) -> None:
        """Seeding is done: count (and hold) only the runners' writes from here on."""
        with self._lock:
            self._conn.execute("SELECT setval('chaos.writes', 1, false)")
            self._conn.execute("UPDATE chaos.control SET hold_at = NULL")

    def end(self, keep: Path | None) -> None:
        """Drop the scenario's database; with ``keep``, first write its rows (no secrets) there."""
        if self.dbname is None:
            return
        self._stop_listening.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
        with self._lock:
            if keep is not None and self._conn is not None:
                try:
                    rows = self._conn.execute(
                        "SELECT user_id, key_id, created_time::text FROM system_key ORDER BY user_id, created_time DESC"
                    ).fetchall()
                    lines = [f"# {self.dbname}: created_time {self.created_type}", "user_id\tkey_id\tcreated_time"]
                    (keep / "system_key.tsv").write_text("\n".join(lines + ["\t".join(map(str, r)) for r in rows]) + "\n")
                except Exception as exc:  # noqa: BLE001
                    (keep / "system_key.tsv").write_text(f"could not read the table: {exc!r}\n")
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self.server.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)")
        self.dbname = None

    def close(self) -> None:
        try:
            self.end(None)
        finally:
            if self._owns_server:
                self.server.stop()
            else:
                with self.server.admin() as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {self.preflight_db} WITH (FORCE)")
                    conn.execute(f"DROP ROLE IF EXISTS {self.role}")

    def _listen(self, dbname: str, stop: threading.Event) -> None:
        import psycopg

        try:
            conn = psycopg.connect(host=self.server.socket_dir, port=self.server.port, user=throwaway_pg.SUPERUSER, dbname=dbname,
                                   autocommit=True, application_name=SUITE_APP)
        except psycopg.Error:
            return
        with conn:
            conn.execute("LISTEN chaos_write")
            while not stop.is_set():
                try:
                    for note in conn.notifies(timeout=0.2):
                        callback = self.on_write
                        if callback is not None:
                            callback(note.payload)
                except psycopg.Error:
                    return

    # --- seeding ---------------------------------------------------------------------------------

    def _created_value(self, when: datetime) -> datetime:
        when = _aware(when).astimezone(UTC)
        return when.replace(tzinfo=None) if self.created_type == "timestamp" else when

    def _insert(self, user_id: str, entries: list[dict]) -> None:
        with self._lock:
            with self._conn.transaction():
                for e in entries:
                    token = self.fernet.encrypt(e["secret_access_key"].encode()).decode()
                    self._conn.execute(
                        "INSERT INTO system_key (key_id, key_secret, user_id, created_time) VALUES (%s, %s, %s, %s)",
                        (e["access_key_id"], token, user_id, self._created_value(e["created"])),
                    )

    def seed_bot(self, sm, bot_name: str, user_id: str, secret_name: str, entries: list[dict], rng) -> None:
        # As the service's rows look: its own insert stamps now() a moment after CreateDate.
        from datetime import timedelta

        jittered = [{**e, "created": e["created"] + timedelta(milliseconds=rng.randint(0, 1500))} for e in entries]
        self._insert(user_id, jittered)

    def seed_decoy(self, user_id: str, entries: list[dict], why: str) -> bool:
        self._insert(user_id, entries)
        return True

    # --- reading as the service does ---------------------------------------------------------------

    def _rows(self) -> list[tuple]:
        with self._lock:
            return self._conn.execute("SELECT user_id, key_id, key_secret, created_time FROM system_key").fetchall()

    def _decrypt(self, token) -> str | None:
        from cryptography.fernet import InvalidToken

        try:
            return self.fernet.decrypt(token.encode()).decode()
        except (InvalidToken, AttributeError, UnicodeError, ValueError, TypeError):
            return None

    def read_bots(self, bots: Iterable) -> dict[str, StoreRead]:
        by_user: dict[str, list[tuple]] = {}
        for user_id, key_id, token, created in self._rows():
            by_user.setdefault(user_id, []).append((key_id, token, created))
        reads = {}
        for bot in bots:
            read = StoreRead()
            for key_id, token, created in by_user.get(bot.user_id, []):
                secret = self._decrypt(token)
                if secret is None:
                    read.problems.append(("store-malformed", f"row {key_id}: key_secret does not decrypt with ENCRYPTION_KEY"))
                if created is None:
                    read.problems.append(("store-malformed", f"row {key_id}: created_time is NULL"))
                    continue
                read.entries.append(Entry(key_id, secret, _aware(created)))
            read.entries.sort(key=lambda e: e.created, reverse=True)
            if read.entries:
                newest = read.entries[0].created
                read.first = [e for e in read.entries if e.created == newest]
            reads[bot.name] = read
        return reads

    def snapshot_decoys(self, subjects: Iterable[str]) -> dict[str, object]:
        wanted = set(subjects)
        snap: dict[str, list] = {s: [] for s in wanted}
        for user_id, key_id, token, created in self._rows():
            if user_id in wanted:
                snap[user_id].append((key_id, token, str(created)))
        return {s: tuple(sorted(v)) for s, v in snap.items()}

    # --- writes: count, hold, kill -------------------------------------------------------------------

    def writes(self) -> int:
        """How many write statements the runners made on the table since seeding."""
        with self._lock:
            last, called = self._conn.execute("SELECT last_value, is_called FROM chaos.writes").fetchone()
        return last if called else 0

    def arm_hold(self, n: int | None) -> None:
        """Hold the n-th write statement's transaction open (after the write, before commit)."""
        with self._lock:
            self._conn.execute("UPDATE chaos.control SET hold_at = %s", (n,))

    def kill_when_held(self, pid: int, done: threading.Event) -> bool:
        """SIGKILL ``pid`` once one of its transactions is held by the trigger; then end the held backend
        (as the server does when it finds the client gone: the transaction rolls back)."""
        import psycopg

        with psycopg.connect(host=self.server.socket_dir, port=self.server.port, user=throwaway_pg.SUPERUSER, dbname=self.dbname,
                             autocommit=True, application_name=SUITE_APP) as conn:
            while not done.is_set():
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep' AND application_name LIKE %s",
                    (self.dbname, RUNNER_APPS),
                ).fetchone()
                if row:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    return True
                time.sleep(0.005)
        return False

    def quiesce(self, timeout: float = 30.0) -> bool:
        """Wait until no runner's connection is left (a killed runner's transaction has rolled back)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                (n,) = self._conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s", (self.dbname, RUNNER_APPS)
                ).fetchone()
            if n == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def make_view(store: str, workdir: Path):
    if store == "secretsmanager":
        return SecretsManagerView()
    if store == "gen3workflow-db":
        return DbView(workdir)
    raise ValueError(f"unknown store {store!r}: one of {', '.join(STORES)}")
