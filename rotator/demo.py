"""``rotator demo``: the whole pipeline against an embedded AWS emulator.

Starts moto's server on loopback inside this process, seeds a small Gen3Workflow
deployment (end users with fresh, expiring and expired keys; bot users with 0, 1, 2
and expired keys, an orphan; decoys of another hostname and unrelated users), prints
the plan, applies it, prints the end state and shows that a second run has nothing to do.

``--store gen3workflow-db`` keeps bot keys where the service reads them: a throwaway
PostgreSQL (from the installed binaries) holds gen3-workflow's ``system_key`` table, the
seeded bot keys are rows the service wrote (Fernet-encrypted with its ``ENCRYPTION_KEY``),
and rotator runs from a gen3-workflow config file alone, as a sidecar does.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rotator.model import NewKey
    from rotator.settings import Settings
    from rotator.throwaway_pg import Binaries, Postgres

HOSTNAME = "demo.example.org"
ACCOUNT_ID = "123456789012"  # moto's default account
STORES = ("secretsmanager", "gen3workflow-db")


@dataclass(frozen=True)
class SeedKey:
    age: timedelta
    active: bool = True
    stored: bool = True


@dataclass(frozen=True)
class SeedUser:
    name: str
    tag: str | None
    keys: tuple[SeedKey, ...] = ()


def seed_users(hostname: str = HOSTNAME) -> list[SeedUser]:
    from rotator.names import bot_user_name, iam_user_name, owner_tag_value

    tag = owner_tag_value(hostname)
    d = lambda days, hours=0: timedelta(days=days, hours=hours)  # noqa: E731
    return [
        SeedUser(iam_user_name(hostname, "101"), tag, (SeedKey(d(5)), SeedKey(d(30, 23)))),  # fresh + 30d23h: both stay
        SeedUser(iam_user_name(hostname, "102"), tag, (SeedKey(d(31)), SeedKey(d(2)))),  # one expired
        SeedUser(iam_user_name(hostname, "103"), tag, (SeedKey(d(3), active=False),)),  # inactive key
        SeedUser(bot_user_name(hostname, "101"), tag, ()),  # bot without keys
        SeedUser(bot_user_name(hostname, "102"), tag, (SeedKey(d(3)),)),  # bot with one key
        SeedUser(bot_user_name(hostname, "103"), tag, (SeedKey(d(16)), SeedKey(d(16)))),  # two keys made together
        SeedUser(bot_user_name(hostname, "104"), tag, (SeedKey(d(40)), SeedKey(d(10)))),  # one expired bot key
        SeedUser(bot_user_name(hostname, "105"), tag, (SeedKey(d(18)), SeedKey(d(3)))),  # healthy, staggered
        SeedUser(bot_user_name(hostname, "106"), tag, (SeedKey(d(2), stored=False), SeedKey(d(5)))),  # orphan key
        # decoys: never touched
        SeedUser(iam_user_name("other.example.org", "101"), owner_tag_value("other.example.org"), (SeedKey(d(90)),)),  # decoy: other hostname
        SeedUser(iam_user_name(hostname, "999"), None, (SeedKey(d(90)),)),  # decoy: our prefix, no tag
        SeedUser("ci-deployer", None, (SeedKey(d(400)),)),  # decoy: unrelated user
        SeedUser(f"gen3wf-{hostname.replace('.', '-')}", tag, (SeedKey(d(90)),)),  # decoy: tagged, malformed name
    ]


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on an ephemeral loopback port; yields its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# (name, age): with no status API configured, age alone decides (past 30 days).
SEED_SECRETS = (
    ("tower-4kd9XbQ2/AWS_ACCESS_TOKEN", timedelta(days=45)),  # an orphan of a long-dead run
    ("tower-4kd9XbQ2/GITHUB_TOKEN", timedelta(days=45)),
    ("tower-7HqP2mZ1/TOKEN", timedelta(days=2)),  # a run that may still be going
    ("tower-bad-name/TOKEN", timedelta(days=45)),  # our prefix, not our pattern: skipped
    ("prod/database-password", timedelta(days=400)),  # decoy
)


def seed_secrets(aws, *, now: datetime) -> None:
    from moto.secretsmanager.models import secretsmanager_backends

    sm = aws.client("secretsmanager")
    backend = secretsmanager_backends[ACCOUNT_ID][aws.region]
    for name, age in SEED_SECRETS:
        sm.create_secret(Name=name, SecretString="demo-value")
        backend.secrets[name].created_date = int((now - age).timestamp())  # moto stamps "now"


class ServiceTable:
    """gen3-workflow's ``system_key`` table, written and read as the service does (``models.py``,
    ``system_key_utils.py``): one row per key, the secret Fernet-encrypted with ``ENCRYPTION_KEY``,
    the Gen3 user id without ``-bot``; ``get_system_key`` hands out the row with the greatest ``created_time``."""

    def __init__(self, *, conninfo: str, encryption_key: str, hostname: str) -> None:
        from cryptography.fernet import Fernet

        self._conninfo = conninfo
        self._fernet = Fernet(encryption_key)
        self.hostname = hostname

    def user_id(self, bot_name: str) -> str:
        from rotator.names import parse_user_name

        parsed = parse_user_name(bot_name, hostname=self.hostname)
        if parsed is None or parsed.kind != "bot":
            raise ValueError(f"{bot_name} is not a bot user of {self.hostname}")
        return parsed.user_id

    def insert(self, key: NewKey) -> None:
        """The row the service writes when it makes a bot key (created_time: the key's creation, naive UTC)."""
        import psycopg

        token = self._fernet.encrypt(key.secret.encode()).decode()
        created = key.created.astimezone(UTC).replace(tzinfo=None)
        with psycopg.connect(self._conninfo) as conn:
            conn.execute("INSERT INTO system_key (key_id, key_secret, user_id, created_time) VALUES (%s, %s, %s, %s)",
                         (key.key_id, token, self.user_id(key.user), created))

    def rows(self) -> list[tuple[str, str, datetime, bool]]:
        """(user_id, key_id, created_time, decrypts with ENCRYPTION_KEY), the service's order per user."""
        import psycopg
        from cryptography.fernet import InvalidToken

        with psycopg.connect(self._conninfo) as conn:
            rows = conn.execute(
                "SELECT user_id, key_id, created_time, key_secret FROM system_key ORDER BY user_id, created_time DESC, key_id DESC"
            ).fetchall()
        out = []
        for user_id, key_id, created, token in rows:
            try:
                decrypts = bool(self._fernet.decrypt(token.encode()))
            except InvalidToken:
                decrypts = False
            out.append((user_id, key_id, created, decrypts))
        return out

    def system_key(self, bot_name: str) -> str | None:
        """The key id ``get_system_key`` hands a task of this bot user: the newest row."""
        import psycopg

        with psycopg.connect(self._conninfo) as conn:
            # Keys made within one second tie on created_time: the service may take either (both are live);
            # the demo takes the greater key id, as rotator's store orders them.
            row = conn.execute("SELECT key_id FROM system_key WHERE user_id = %s ORDER BY created_time DESC, key_id DESC LIMIT 1",
                               (self.user_id(bot_name),)).fetchone()
        return row[0] if row else None


def seed(aws, *, hostname: str, keep: Callable[[NewKey], None], now: datetime, users: list[SeedUser] | None = None) -> None:
    """Create users and keys through the AWS API, then age the keys in the emulator; ``keep`` stores a bot key's secret."""
    from moto.iam.models import iam_backends

    from rotator.model import NewKey

    iam = aws.client("iam")
    backend = iam_backends[ACCOUNT_ID]["global"]
    for user in users or seed_users(hostname):
        tags = [{"Key": "name", "Value": user.tag}] if user.tag else []
        iam.create_user(UserName=user.name, Tags=tags)
        for seed_key in user.keys:
            created = iam.create_access_key(UserName=user.name)["AccessKey"]
            when = now - seed_key.age
            # moto stamps keys with the current time; age them as if made earlier.
            for key in backend.users[user.name].access_keys:
                if key.access_key_id == created["AccessKeyId"]:
                    key.create_date = when
            if not seed_key.active:
                iam.update_access_key(UserName=user.name, AccessKeyId=created["AccessKeyId"], Status="Inactive")
            if user.name.endswith("-bot") and seed_key.stored and user.tag:
                keep(NewKey(user=user.name, key_id=created["AccessKeyId"], created=when, secret=created["SecretAccessKey"]))


def end_state(aws, *, settings: Settings, now: datetime, table: ServiceTable | None = None) -> str:
    """Users and keys, whether each bot key is stored (and the one readers take), the secrets; with ``table``, its rows."""
    from rotator.keystore import make_store

    store = make_store(settings, aws)
    try:
        users = _users_table(aws.client("iam"), store, column="IN system_key" if table else "IN SECRETS MANAGER", now=now)
    finally:
        getattr(store, "close", lambda: None)()
    secrets = [("SECRET", "STATE")]
    sm = aws.client("secretsmanager")
    for page in sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        for s in sorted(page["SecretList"], key=lambda s: s["Name"]):
            secrets.append((s["Name"], "scheduled for deletion" if "DeletedDate" in s else "present"))
    text = users + "\n\n" + _columns(secrets)
    if table is not None:
        rows = [("system_key.user_id", "key_id", "created_time (UTC)", "key_secret")]
        for user_id, key_id, created, decrypts in table.rows():
            rows.append((user_id, key_id, created.strftime("%Y-%m-%d %H:%M"),
                         "Fernet token: decrypts with ENCRYPTION_KEY" if decrypts else "does NOT decrypt"))
        text += "\n\n" + _columns(rows)
    return text


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _users_table(iam, store, *, column: str, now: datetime) -> str:
    from rotator.inventory import classify_user, list_access_keys
    from rotator.model import ManagedUser

    rows = [("USER", "KEY", "AGE", "STATUS", column, "")]
    for page in iam.get_paginator("list_users").paginate():
        for user in sorted(page["Users"], key=lambda u: u["UserName"]):
            name = user["UserName"]
            tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
            ours = isinstance(classify_user(name, tags, hostname=HOSTNAME), ManagedUser)
            note = "" if ours else "decoy: never touched"
            is_bot = ours and name.endswith("-bot")
            stored = store.stored_key_ids(name) if is_bot else frozenset()
            first = store.first_key_id(name) if is_bot else None
            keys = list_access_keys(iam, name)
            if not keys:
                rows.append((name, "-", "", "", "", note))
            for key in keys:
                age = now - key.created
                rows.append(
                    (
                        name,
                        key.key_id,
                        f"{age.days}d{age.seconds // 3600:02d}h",
                        "Active" if key.active else "Inactive",
                        _stored(key.key_id, stored=stored, first=first) if is_bot else "",
                        note,
                    )
                )
    return _columns(rows)


def _stored(key_id: str, *, stored: frozenset[str], first: str | None) -> str:
    if key_id not in stored:
        return "not stored"
    return "stored, handed out" if key_id == first else "stored"


def service_config(directory: Path, server: Postgres, *, encryption_key: str) -> Path:
    """gen3-workflow's config file naming its database, as gen3-helm mounts it (it holds secrets: mode 0600)."""
    path = directory / "gen3-workflow-config.yaml"
    path.touch(mode=0o600)
    path.write_text(
        f"HOSTNAME: {HOSTNAME}\nIAM_KEYS_LIFETIME_DAYS: 30\nDB_DRIVER: postgresql+asyncpg\nDB_HOST: {server.host}\n"
        f"DB_PORT: {server.port}\nDB_USER: {server.user}\nDB_PASSWORD: {server.password}\nDB_DATABASE: {server.database}\n"
        f"ENCRYPTION_KEY: {encryption_key}\n",
        encoding="utf-8",
    )
    return path


def main(store: str = "secretsmanager", *, log_level: str = "warning") -> int:
    from rotator import throwaway_pg

    try:
        import moto  # noqa: F401
    except ImportError:
        print("rotator demo needs the emulator: pip install 'gen3wf-rotator[demo]'", file=sys.stderr)
        return 2
    if store not in STORES:
        print(f"rotator demo: --store is one of {', '.join(STORES)}", file=sys.stderr)
        return 2
    try:
        binaries = throwaway_pg.find_binaries() if store == "gen3workflow-db" else None
        with ExitStack() as stack:
            return _demo(stack, store=store, binaries=binaries, log_level=log_level)
    except throwaway_pg.PostgresUnavailable as exc:
        print(f"rotator: demo --store gen3workflow-db: {exc}", file=sys.stderr)
        return 2


def _demo(stack: ExitStack, *, store: str, binaries: Binaries | None, log_level: str) -> int:
    from cryptography.fernet import Fernet
    from psycopg.conninfo import make_conninfo

    from rotator import logs, throwaway_pg
    from rotator.aws import Aws
    from rotator.jobs import JOB_NAMES
    from rotator.keystore.secretsmanager import SecretsManagerStore
    from rotator.report import render_text
    from rotator.runner import Runner, utcnow
    from rotator.settings import load_settings

    url = stack.enter_context(moto_server())
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )
    ignored = sorted(k for k in os.environ if k.startswith("ROTATOR_"))
    for name in ignored:
        del os.environ[name]
    if ignored:
        print(f"== the demo runs on its own settings: ignoring {', '.join(ignored)}\n")
    table = None
    if store == "gen3workflow-db":
        server = stack.enter_context(throwaway_pg.postgres(binaries))
        encryption_key = Fernet.generate_key().decode()
        config = service_config(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rotator-demo-"))), server,
                                encryption_key=encryption_key)
        os.environ["ROTATOR_GEN3WORKFLOW_CONFIG"] = str(config)  # a sidecar's only setting
        conninfo = make_conninfo(host=server.host, port=server.port, user=server.user, password=server.password,
                                 dbname=server.database)
        table = ServiceTable(conninfo=conninfo, encryption_key=encryption_key, hostname=HOSTNAME)
        print(f"== throwaway PostgreSQL at {server.host}:{server.port}: gen3-workflow's database {server.database} with its"
              " table system_key (migration e1886270d9d2)")
        print(f"== rotator runs from gen3-workflow's config alone ({config}): its DB_* and ENCRYPTION_KEY make the"
              " bot-key store gen3workflow-db\n")
    else:
        os.environ["ROTATOR_HOSTNAME"] = HOSTNAME
    settings = load_settings()
    logs.configure(format="console", level=log_level)
    if settings.bot_keys.store != store:
        print(f"demo: the settings chose the {settings.bot_keys.store} store, not {store}", file=sys.stderr)
        return 1

    aws = Aws()
    now = utcnow()
    if table is not None:
        keep, where = table.insert, "rows the service wrote in system_key"
    else:
        keep, where = SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix).add, "Secrets Manager"
    print(f"== embedded AWS emulator at {url}; seeding deployment {HOSTNAME} and decoys (stored bot keys: {where})\n")
    seed(aws, hostname=HOSTNAME, keep=keep, now=now)
    seed_secrets(aws, now=now)
    print(end_state(aws, settings=settings, now=now, table=table))

    runner = Runner(settings, aws=aws)
    jobs = list(JOB_NAMES)
    print("\n== rotator plan")
    print(render_text(runner.run(jobs, dry_run=True), command="plan"))

    print("\n== rotator run --apply")
    applied = runner.run(jobs, dry_run=False)
    print(render_text(applied, command="run"))

    if table is None:
        print("\n== end state (secrets stay in Secrets Manager; only key ids are shown)")
    else:
        print("\n== end state (secrets stay in system_key, encrypted with the service's ENCRYPTION_KEY; only key ids are shown)")
    print(end_state(aws, settings=settings, now=utcnow(), table=table))
    dead = _dead_system_keys(aws, table) if table is not None else []
    if table is not None:
        print("\n== the service's get_system_key hands every bot user its newest row: "
              + ("a live key for each" if not dead else f"a dead key for {', '.join(dead)}"))

    print("\n== second run: nothing left to do")
    again = runner.run(jobs, dry_run=True)
    print(render_text(again, command="plan"))
    if applied.exit_code or again.exit_code or dead or any(j.plan and j.plan.actions for j in again.jobs):
        print("demo: unexpected result", file=sys.stderr)
        return 1
    return 0


def _dead_system_keys(aws, table: ServiceTable) -> list[str]:
    """Bot users of the deployment whose newest row does not name an active IAM key."""
    from rotator.inventory import list_access_keys

    iam = aws.client("iam")
    dead = []
    for user in seed_users(HOSTNAME):
        if user.tag and user.name.endswith("-bot"):
            active = {k.key_id for k in list_access_keys(iam, user.name) if k.active}
            if table.system_key(user.name) not in active:
                dead.append(user.name)
    return dead
