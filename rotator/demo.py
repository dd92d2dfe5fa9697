"""``rotator demo``: the whole pipeline against an embedded AWS emulator.

Starts moto's server on loopback inside this process, seeds a small Gen3Workflow
deployment (end users with fresh, expiring and expired keys; bot users with 0, 1, 2
and expired keys, an orphan; decoys of another hostname and unrelated users), prints
the plan, applies it, prints the end state and shows that a second run has nothing to do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

HOSTNAME = "demo.example.org"
ACCOUNT_ID = "123456789012"  # moto's default account


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


def seed(aws, *, hostname: str, secret_prefix: str, now: datetime, users: list[SeedUser] | None = None) -> None:
    """Create users and keys through the AWS API, then age the keys in the emulator."""
    from moto.iam.models import iam_backends

    from rotator.keystore.secretsmanager import SecretsManagerStore
    from rotator.model import NewKey

    iam = aws.client("iam")
    store = SecretsManagerStore(aws.client("secretsmanager"), prefix=secret_prefix)
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
                store.add(NewKey(user=user.name, key_id=created["AccessKeyId"], created=when, secret=created["SecretAccessKey"]))


def end_state(aws, *, secret_prefix: str, now: datetime) -> str:
    from rotator.inventory import list_access_keys
    from rotator.keystore.secretsmanager import SecretsManagerStore

    iam = aws.client("iam")
    store = SecretsManagerStore(aws.client("secretsmanager"), prefix=secret_prefix)
    from rotator.inventory import classify_user
    from rotator.model import ManagedUser

    rows = [("USER", "KEY", "AGE", "STATUS", "IN THE BOT-KEY STORE", "")]
    for page in iam.get_paginator("list_users").paginate():
        for user in sorted(page["Users"], key=lambda u: u["UserName"]):
            name = user["UserName"]
            tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
            ours = isinstance(classify_user(name, tags, hostname=HOSTNAME), ManagedUser)
            note = "" if ours else "decoy: never touched"
            is_bot = ours and name.endswith("-bot")
            stored = store.stored_key_ids(name) if is_bot else frozenset()
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
                        ("stored" if key.key_id in stored else "not stored") if is_bot else "",
                        note,
                    )
                )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    secrets = [("SECRET", "STATE")]
    sm = aws.client("secretsmanager")
    for page in sm.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True):
        for s in sorted(page["SecretList"], key=lambda s: s["Name"]):
            secrets.append((s["Name"], "scheduled for deletion" if "DeletedDate" in s else "present"))
    width = max(len(n) for n, _ in secrets)
    return table + "\n\n" + "\n".join(f"{n.ljust(width)}  {st}" for n, st in secrets)


def main() -> int:
    from rotator import logs
    from rotator.aws import Aws
    from rotator.jobs import JOB_NAMES
    from rotator.report import render_text
    from rotator.runner import Runner, utcnow
    from rotator.settings import load_settings

    try:
        import moto  # noqa: F401
    except ImportError:
        print("rotator demo needs the emulator: pip install 'gen3wf-rotator[demo]'", file=sys.stderr)
        return 2

    with moto_server() as url:
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
        os.environ["ROTATOR_HOSTNAME"] = HOSTNAME
        os.environ.setdefault("ROTATOR_LOG__FORMAT", "console")
        settings = load_settings()
        logs.configure(format=settings.log.format, level="warning")

        aws = Aws()
        now = utcnow()
        print(f"== embedded AWS emulator at {url}; seeding deployment {HOSTNAME} and decoys\n")
        seed(aws, hostname=HOSTNAME, secret_prefix=settings.bot_secret_prefix, now=now)
        seed_secrets(aws, now=now)
        print(end_state(aws, secret_prefix=settings.bot_secret_prefix, now=now))

        runner = Runner(settings, aws=aws)
        jobs = list(JOB_NAMES)
        print("\n== rotator plan")
        print(render_text(runner.run(jobs, dry_run=True), command="plan"))

        print("\n== rotator run --apply")
        applied = runner.run(jobs, dry_run=False)
        print(render_text(applied, command="run"))

        print("\n== end state (secrets stay in Secrets Manager; only key ids are shown)")
        print(end_state(aws, secret_prefix=settings.bot_secret_prefix, now=utcnow()))

        print("\n== second run: nothing left to do")
        again = runner.run(jobs, dry_run=True)
        print(render_text(again, command="plan"))
        if applied.exit_code or again.exit_code or any(j.plan and j.plan.actions for j in again.jobs):
            print("demo: unexpected result", file=sys.stderr)
            return 1
    return 0
