"""A seeded Gen3Workflow deployment in moto, and what the rotator may and must do to it.

``build(seed, moto_url)`` resets nothing itself: call it on an empty emulator. It creates
through the AWS API (straight to moto, not through the proxy):

* end users: keys on the day boundary (30d23h stays, 31d goes with lifetime 30),
  inactive keys, fresh keys, users without keys;
* bot users in every shape (see ``BOT_SHAPES``): no key, one key, an expired key, a
  synchronised pair due for rotation (both 16d), an inactive key, orphans old (2h) and
  young (5 min), stale store entries (a stored key id IAM no longer has), healthy
  staggered pairs, ...;
* run secrets ``tower-<id>/<NAME>``: old (45d, go with status source none), young (2d)
  and too young (10 min) (stay);
* decoys that must never be touched: users of another hostname, of a hostname whose
  user names start with ours (``chaos.example.org.evil``), untagged users with our
  prefix, a tagged user with a malformed name, unrelated users, unrelated secrets,
  another deployment's bot-key store, a store secret under our prefix for a user that
  is not ours, a run-secret look-alike that matches no pattern.

then ages keys and secrets by editing moto's backend objects in process (moto stamps
everything "now"), and records the facts the invariants judge against.

The bot-key store is seeded through a store view (chaos/stores.py), as the service sees it:
with ``secretsmanager`` one secret per bot user, ``gen3wf-rotator/<hostname>/bot-keys/<iam
user name>``, value a JSON list of ``{"access_key_id", "secret_access_key", "created"}``
newest first; with ``gen3workflow-db`` one ``system_key`` row per stored key (Fernet-encrypted
secret, the Gen3 user id, ``created_time`` the key's CreateDate plus up to 1.5 s, as the
service's own ``now()`` default stamps it), plus decoy rows rotator must leave alone. The
Secrets Manager decoys (other deployments' store secrets, ...) are seeded with either store.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import boto3
from botocore.config import Config

from chaos.stores import SecretsManagerView, write_store_secret
from rotator.names import bot_user_name, iam_user_name, owner_tag_value

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

HOSTNAME = "chaos.example.org"
OTHER_HOSTNAME = "other.example.org"
EVIL_HOSTNAME = "chaos.example.org.evil"  # gen3wf-chaos-example-org-evil-<id>: starts with our prefix

LIFETIME_DAYS = 30
ROTATION_AGE = timedelta(days=LIFETIME_DAYS / 2)
ORPHAN_GRACE = timedelta(minutes=60)
RUN_SECRET_MIN_AGE = timedelta(minutes=60)
RUN_SECRET_MAX_AGE_DAYS = 30
MAX_SCENARIO_AGE = timedelta(minutes=50)
"""Expectations are computed at seed time; the young orphan (5 min) and the 30d23h key
keep their verdicts for this long."""


def store_prefix(hostname: str) -> str:
    return f"gen3wf-rotator/{hostname}/bot-keys/"


def d(days: float = 0, hours: float = 0, minutes: float = 0) -> timedelta:
    return timedelta(days=days, hours=hours, minutes=minutes)


@dataclass(frozen=True)
class K:
    """A seeded key: age, status, whether its secret is in the store."""

    age: timedelta
    active: bool = True
    stored: bool = True


# shape -> (keys, stale store entries as (age, position: "first" | "last"))
BOT_SHAPES: dict[str, tuple[tuple[K, ...], tuple[tuple[timedelta, str], ...]]] = {
    "no-key": ((), ()),
    "one-key": ((K(d(3)),), ()),
    "one-key-older": ((K(d(12)),), ()),
    "expired-only": ((K(d(40)),), ()),
    "expired-and-fresh": ((K(d(40)), K(d(10))), ()),
    "both-expired": ((K(d(45)), K(d(35))), ()),
    "synchronised-pair": ((K(d(16)), K(d(16))), ()),
    "rotation-due": ((K(d(25)), K(d(16))), ()),
    "inactive": ((K(d(8), active=False), K(d(5))), ()),
    "inactive-only": ((K(d(8), active=False),), ()),
    "orphan-old": ((K(d(4)), K(d(hours=2), stored=False)), ()),
    "orphan-old-only": ((K(d(hours=2), stored=False),), ()),
    "orphan-young": ((K(d(3)), K(d(minutes=5), stored=False)), ()),
    "orphan-young-only": ((K(d(minutes=5), stored=False),), ()),
    "stale-entry": ((K(d(5)),), ((d(10), "last"),)),
    "stale-first": ((K(d(6)),), ((d(1), "first"),)),
    "stale-only": ((), ((d(2), "first"),)),
    "healthy": ((K(d(18)), K(d(3))), ()),
    "healthy-young": ((K(d(14)), K(d(hours=3))), ()),
}

# end-user shapes: key ages (lifetime 30)
USER_SHAPES: dict[str, tuple[K, ...]] = {
    "day-boundary": (K(d(30, hours=23)), K(d(31))),  # 30d23h stays, 31d goes
    "inactive": (K(d(3), active=False), K(d(1))),
    "fresh": (K(d(2)),),
    "both-expired": (K(d(90)), K(d(31, hours=1))),
    "no-key": (),
    "boundary-30d": (K(d(30)),),  # 30 days exactly: not "> 30"
}


@dataclass
class KeyFact:
    key_id: str
    user: str
    kind: str  # user | bot
    age: timedelta
    active: bool
    stored: bool
    secret: str
    deletable: bool
    why: str
    """Why the rotator may delete it (or why it must be kept)."""


@dataclass
class BotFact:
    name: str
    shape: str
    store_secret: str
    """Its Secrets Manager store secret (store secretsmanager)."""
    user_id: str
    """Its Gen3 user id: ``system_key.user_id`` (store gen3workflow-db)."""
    keys: list[str]
    stale_ids: set[str]
    young_orphans: set[str]
    usable_at_start: bool
    """The store's first entry names an existing Active key with the right secret."""
    at_most_one_of: set[str] = field(default_factory=set)
    """Synchronised pair: rotation may delete either key, never both."""


@dataclass
class Scenario:
    seed: int
    hostname: str
    now: datetime
    prefix: str
    end_users: dict[str, str]  # name -> shape
    bots: dict[str, BotFact]
    keys: dict[str, KeyFact]
    old_run_secrets: set[str]
    kept_run_secrets: set[str]
    decoy_users: dict[str, str]  # name -> why
    decoy_secrets: dict[str, str]  # name -> why
    hidden: set[str]
    """Secret values that must never appear in any output."""
    decoy_store: dict[str, str] = field(default_factory=dict)
    """Store-specific decoys (gen3workflow-db: user ids whose rows must stay as they are) -> why."""
    store: str = "secretsmanager"

    def summary(self) -> str:
        shapes: dict[str, int] = {}
        for b in self.bots.values():
            shapes[b.shape] = shapes.get(b.shape, 0) + 1
        return (
            f"{len(self.end_users)} end users, {len(self.bots)} bot users, {len(self.keys)} keys, "
            f"{len(self.old_run_secrets)} old + {len(self.kept_run_secrets)} kept run secrets, "
            f"{len(self.decoy_users)} decoy users, {len(self.decoy_secrets)} decoy secrets"
        )


def clients(url: str):
    cfg = Config(retries={"mode": "standard", "max_attempts": 2})
    kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="chaos-seed", aws_secret_access_key="chaos-seed", config=cfg)
    return boto3.client("iam", **kw), boto3.client("secretsmanager", **kw)


def _fake_key_id(rng: random.Random) -> str:
    return "AKIA" + "".join(rng.choices(string.ascii_uppercase + "234567", k=16))


def _secret_value(rng: random.Random, label: str) -> str:
    return f"chaos-{label}-" + "".join(rng.choices(string.ascii_letters + string.digits, k=32))


def build(seed: int, moto_url: str, *, hostname: str = HOSTNAME, scale: int = 1, store=None) -> Scenario:
    """Seed a fresh scenario into an empty emulator (and an empty store). ``scale``: instances per
    shape (upper bound); ``store``: a view of chaos/stores.py (default: Secrets Manager)."""
    store = store or SecretsManagerView()
    from moto.iam.models import iam_backends
    from moto.secretsmanager.models import secretsmanager_backends

    rng = random.Random(seed)
    iam, sm = clients(moto_url)
    iam_backend = iam_backends[ACCOUNT_ID]["global"]
    sm_backend = secretsmanager_backends[ACCOUNT_ID][REGION]
    now = datetime.now(UTC)
    prefix = store_prefix(hostname)
    tag = owner_tag_value(hostname)
    hidden: set[str] = set()
    keys: dict[str, KeyFact] = {}
    ids = rng.sample(range(100, 100000), 400)
    next_id = iter(ids)

    def create_user(name: str, tag_value: str | None) -> None:
        tags = [{"Key": "name", "Value": tag_value}] if tag_value else []
        iam.create_user(UserName=name, Tags=tags)

    def create_key(user: str, k: K) -> tuple[str, str, datetime]:
        created = iam.create_access_key(UserName=user)["AccessKey"]
        when = now - k.age
        for key in iam_backend.users[user].access_keys:
            if key.access_key_id == created["AccessKeyId"]:
                key.create_date = when.replace(tzinfo=None)  # moto keeps naive UTC
        if not k.active:
            iam.update_access_key(UserName=user, AccessKeyId=created["AccessKeyId"], Status="Inactive")
        hidden.add(created["SecretAccessKey"])
        return created["AccessKeyId"], created["SecretAccessKey"], when

    def write_store(secret_name: str, user: str, entries: list[dict], *, extra_tags=()) -> None:
        write_store_secret(sm, secret_name, user, entries, extra_tags=extra_tags)

    # --- end users --------------------------------------------------------------------
    end_users: dict[str, str] = {}
    for shape, seeded in USER_SHAPES.items():
        for _ in range(rng.randint(1, scale)):
            name = iam_user_name(hostname, str(next(next_id)))
            create_user(name, tag)
            end_users[name] = shape
            for k in seeded:
                key_id, secret, _ = create_key(name, k)
                days = k.age.days
                if not k.active:
                    deletable, why = True, "inactive"
                elif days > LIFETIME_DAYS:
                    deletable, why = True, f"expired ({days}d > {LIFETIME_DAYS}d)"
                else:
                    deletable, why = False, f"live ({_fmt(k.age)} old, lifetime {LIFETIME_DAYS}d)"
                keys[key_id] = KeyFact(key_id, name, "user", k.age, k.active, False, secret, deletable, why)

    # --- bot users --------------------------------------------------------------------
    bots: dict[str, BotFact] = {}
    for shape, (seeded, stale) in BOT_SHAPES.items():
        for _ in range(rng.randint(1, scale)):
            user_id = str(next(next_id))
            name = bot_user_name(hostname, user_id)
            create_user(name, tag)
            entries = []
            facts: list[KeyFact] = []
            young: set[str] = set()
            for k in seeded:
                key_id, secret, when = create_key(name, k)
                fact = KeyFact(key_id, name, "bot", k.age, k.active, k.stored, secret, False, "")
                facts.append(fact)
                if k.stored:
                    entries.append({"access_key_id": key_id, "secret_access_key": secret, "created": when})
                elif k.age < ORPHAN_GRACE:
                    young.add(key_id)
            stale_ids = set()
            for age, _pos in stale:
                stale_id = _fake_key_id(rng)
                stale_secret = _secret_value(rng, "stale")
                hidden.add(stale_secret)
                stale_ids.add(stale_id)
                entries.append({"access_key_id": stale_id, "secret_access_key": stale_secret, "created": now - age})
            at_most_one = _judge_bot_keys(facts)
            for f in facts:
                keys[f.key_id] = f
            secret_name = prefix + name
            store.seed_bot(sm, name, user_id, secret_name, entries, rng)
            bots[name] = BotFact(
                name=name,
                shape=shape,
                store_secret=secret_name,
                user_id=user_id,
                keys=[f.key_id for f in facts],
                stale_ids=stale_ids,
                young_orphans=young,
                usable_at_start=False,
                at_most_one_of=at_most_one,
            )
    # What the service hands out at the start, as the store's reader sees it.
    active_ids = {f.key_id for f in keys.values() if f.active}
    for name, read in store.read_bots(bots.values()).items():
        bots[name].usable_at_start = bool(read.first) and all(e.key_id in active_ids for e in read.first)

    # --- run secrets --------------------------------------------------------------------
    old_run_secrets: set[str] = set()
    kept_run_secrets: set[str] = set()

    def run_secret(name: str, age: timedelta) -> None:
        value = _secret_value(rng, "run")
        hidden.add(value)
        sm.create_secret(Name=name, SecretString=value)
        sm_backend.secrets[name].created_date = int((now - age).timestamp())

    def run_id() -> str:
        return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(8, 16)))

    for _ in range(rng.randint(2, 2 + 2 * scale)):
        rid = run_id()
        for env in rng.sample(["AWS_ACCESS_TOKEN", "GITHUB_TOKEN", "TOWER_TOKEN", "DB_PASSWORD"], rng.randint(1, 2)):
            run_secret(f"tower-{rid}/{env}", d(45))
            old_run_secrets.add(f"tower-{rid}/{env}")
    for age in [d(2), d(minutes=10)] + [d(rng.randint(1, 29))] * rng.randint(0, scale):
        name = f"tower-{run_id()}/TOKEN"
        run_secret(name, age)
        kept_run_secrets.add(name)

    # --- decoys: never touched --------------------------------------------------------------
    decoy_users: dict[str, str] = {}
    decoy_secrets: dict[str, str] = {}

    def decoy_user(name: str, tag_value: str | None, ks: tuple[K, ...], why: str) -> list[tuple[str, str, datetime]]:
        create_user(name, tag_value)
        decoy_users[name] = why
        return [create_key(name, k) for k in ks]

    other_tag = owner_tag_value(OTHER_HOSTNAME)
    evil_tag = owner_tag_value(EVIL_HOSTNAME)
    expired = (K(d(90)), K(d(2), active=False))
    uid = str(next(next_id))
    decoy_user(iam_user_name(OTHER_HOSTNAME, uid), other_tag, expired, "other hostname: end user")
    other_bot = bot_user_name(OTHER_HOSTNAME, uid)
    made = decoy_user(other_bot, other_tag, (K(d(40)), K(d(hours=3), stored=False)), "other hostname: bot user")
    other_store = store_prefix(OTHER_HOSTNAME) + other_bot
    write_store(other_store, other_bot, [{"access_key_id": made[0][0], "secret_access_key": made[0][1], "created": made[0][2]}])
    decoy_secrets[other_store] = "another deployment's bot-key store"

    uid = str(next(next_id))
    decoy_user(iam_user_name(EVIL_HOSTNAME, uid), evil_tag, expired, "prefix-colliding hostname: end user (name parses as ours)")
    evil_bot = bot_user_name(EVIL_HOSTNAME, uid)
    made = decoy_user(evil_bot, evil_tag, (K(d(40)),), "prefix-colliding hostname: bot user")
    evil_store = prefix + evil_bot  # under OUR store prefix, but the user is not ours
    write_store(evil_store, evil_bot, [{"access_key_id": made[0][0], "secret_access_key": made[0][1], "created": made[0][2]}])
    decoy_secrets[evil_store] = "store secret under our prefix for a user that is not ours"
    evil_own_store = store_prefix(EVIL_HOSTNAME) + evil_bot
    write_store(evil_own_store, evil_bot, [{"access_key_id": made[0][0], "secret_access_key": made[0][1], "created": made[0][2]}])
    decoy_secrets[evil_own_store] = "prefix-colliding hostname's bot-key store"
    decoy_store: dict[str, str] = {}
    evil_uid = f"evil-{uid}"  # bot_user_name(hostname, evil_uid) is the prefix-colliding bot user
    if store.seed_decoy(evil_uid, [{"access_key_id": made[0][0], "secret_access_key": made[0][1], "created": made[0][2]}],
                        "rows whose user id names a bot user tagged for another hostname"):
        decoy_store[evil_uid] = "rows whose user id names a bot user tagged for another hostname"

    decoy_user(iam_user_name(hostname, str(next(next_id))), None, expired, "our prefix, no tag")
    untagged_bot = bot_user_name(hostname, str(next(next_id)))
    made = decoy_user(untagged_bot, None, (K(d(40)),), "our prefix, bot name, no tag")
    untagged_store = prefix + untagged_bot
    write_store(untagged_store, untagged_bot, [{"access_key_id": made[0][0], "secret_access_key": made[0][1], "created": made[0][2]}])
    decoy_secrets[untagged_store] = "store secret of an untagged bot-named user"
    untagged_uid = untagged_bot[len(tag) + 1:].removesuffix("-bot")
    if store.seed_decoy(untagged_uid, [{"access_key_id": made[0][0], "secret_access_key": made[0][1], "created": made[0][2]}],
                        "rows of an untagged bot-named user"):
        decoy_store[untagged_uid] = "rows of an untagged bot-named user"
    if store.has_decoy_rows:  # (drawn only then: Secrets Manager scenarios stay as they were)
        ghost_uid = str(next(next_id))  # no IAM user at all (a deleted user's rows): not rotator's to judge
        ghost_secret = _secret_value(rng, "ghost")
        hidden.add(ghost_secret)
        store.seed_decoy(ghost_uid, [{"access_key_id": _fake_key_id(rng), "secret_access_key": ghost_secret, "created": now - d(3)}],
                         "rows of a user id with no IAM user")
        decoy_store[ghost_uid] = "rows of a user id with no IAM user"
    decoy_user(iam_user_name(hostname, str(next(next_id))), other_tag, expired, "our prefix, other hostname's tag")
    decoy_user(f"gen3wf-{hostname.replace('.', '-')}", tag, expired, "tagged as ours, malformed name")
    decoy_user(f"{tag}-", tag, (K(d(90)),), "tagged as ours, empty user id")
    decoy_user("ci-deployer", None, (K(d(400)),), "unrelated user")
    decoy_user("gen3wf-chaos-example-organic-7", owner_tag_value("chaos.example.organic"), expired, "prefix-colliding hostname without a dash")

    for name, age, why in (
        ("prod/db-password", d(400), "unrelated secret"),
        ("tower-bad-name/TOKEN", d(45), "run-secret prefix, run id matches no pattern"),
        ("tower-4kd9XbQ2/lower-case-name", d(45), "run-secret prefix, NAME matches no pattern"),
        ("xtower-4kd9XbQ2/TOKEN", d(45), "run-secret look-alike"),
    ):
        value = _secret_value(rng, "decoy")
        hidden.add(value)
        sm.create_secret(Name=name, SecretString=value)
        sm_backend.secrets[name].created_date = int((now - age).timestamp())
        decoy_secrets[name] = why

    return Scenario(
        seed=seed,
        hostname=hostname,
        now=now,
        prefix=prefix,
        end_users=end_users,
        bots=bots,
        keys=keys,
        old_run_secrets=old_run_secrets,
        kept_run_secrets=kept_run_secrets,
        decoy_users=decoy_users,
        decoy_secrets=decoy_secrets,
        hidden=hidden,
        decoy_store=decoy_store,
        store=store.name,
    )


def _judge_bot_keys(facts: list[KeyFact]) -> set[str]:
    """Mark which seeded keys of one bot user the rotator may delete (mutates ``facts``).

    Expired, inactive and old orphans may go; of two remaining keys whose newest is at
    least lifetime/2 old, the older may go (of a synchronised pair, either, not both).
    Returns the synchronised pair's key ids, or an empty set.
    """
    kept = []
    for f in facts:
        if not f.active:
            f.deletable, f.why = True, "inactive"
        elif f.age.days > LIFETIME_DAYS:
            f.deletable, f.why = True, f"expired ({f.age.days}d > {LIFETIME_DAYS}d)"
        elif not f.stored and f.age >= ORPHAN_GRACE:
            f.deletable, f.why = True, f"orphan ({_fmt(f.age)} old, not stored)"
        elif not f.stored:
            f.why = f"young orphan ({_fmt(f.age)} < {ORPHAN_GRACE} grace): must be left alone"
            kept.append(f)
        else:
            f.why = f"live, stored ({_fmt(f.age)} old)"
            kept.append(f)
    if len(kept) == 2:
        older, newest = sorted(kept, key=lambda f: -f.age)
        if min(older.age, newest.age) >= ROTATION_AGE:
            if older.age == newest.age:
                for f in kept:
                    f.deletable, f.why = True, f"rotation due: synchronised pair ({_fmt(f.age)}): one of the two may go"
                return {older.key_id, newest.key_id}
            older.deletable, older.why = True, f"rotation due: newest {_fmt(newest.age)} >= {ROTATION_AGE.days}d"
    return set()


def _fmt(age: timedelta) -> str:
    if age >= timedelta(days=1):
        hours = age.seconds // 3600
        return f"{age.days}d{hours}h" if hours else f"{age.days}d"
    if age >= timedelta(hours=1):
        return f"{int(age.total_seconds() // 3600)}h"
    return f"{int(age.total_seconds() // 60)}m"
