"""A minimal reference rotator, used only to check the suite itself (``run.py --self-test``).

It is not rotator and shares no code with it (only ``rotator.names`` for the naming rule).
It exists to show that every invariant the suite checks can be met under the same faults,
kills and concurrency — so a violation reported against rotator is rotator's, not the
suite's. Same command line subset and environment as rotator (``run --apply``, ``plan``,
``--job``, ``--output json``), same store format, and the behaviour issue 10 asks for:

* bot keys make-before-break; with two keys to replace, one at a time; a key is never
  deleted while the store lists it;
* every store write compare-and-swap (a new version under AWSPENDING, then
  ``UpdateSecretVersionStage(..., RemoveFromVersionId=<version read>)``), re-read on
  conflict or after an ambiguous failure;
* CreateAccessKey not retried; after an ambiguous failure re-list and delete the keys
  that appeared and are not stored, then create again; LimitExceeded is a lost race;
* the store is read before IAM is listed, so a key another runner just stored is never
  taken for a stale entry; young unstored keys are never touched.

Both of rotator's stores: Secrets Manager (the default) and, with
``ROTATOR_BOT_KEYS__STORE=gen3workflow-db`` and the ``ROTATOR_BOT_KEYS__DB__*`` settings,
gen3-workflow's ``system_key`` table: one row per key, the secret Fernet-encrypted, the
newest ``created_time`` first; every change one transaction under a per-user
``pg_advisory_xact_lock`` (the compare-and-swap of that store), a key inserted only once
CreateAccessKey returned it and deleted in IAM only after its row is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from rotator.names import owner_tag_value

THROTTLES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
RUN_SECRET = re.compile(r"^tower-(?P<run_id>[A-Za-z0-9]{1,16})/[A-Za-z_][A-Za-z0-9_]*$")


def log(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Ref:
    def __init__(self, apply: bool) -> None:
        self.apply = apply
        self.host = os.environ["ROTATOR_HOSTNAME"]
        self.tag = owner_tag_value(self.host)
        self.user_lifetime = env_int("ROTATOR_USER_KEYS__LIFETIME_DAYS", 30)
        self.bot_lifetime = env_int("ROTATOR_BOT_KEYS__LIFETIME_DAYS", 30)
        self.grace = timedelta(minutes=env_int("ROTATOR_BOT_KEYS__ORPHAN_GRACE_MINUTES", 60))
        self.max_age = env_int("ROTATOR_RUN_SECRETS__MAX_AGE_DAYS", 30)
        self.prefix = f"gen3wf-rotator/{self.host}/bot-keys/"
        region = os.environ.get("AWS_REGION", "us-east-1")
        retrying = Config(retries={"mode": "standard", "max_attempts": 10}, connect_timeout=5, read_timeout=30)
        once = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
        self.iam = boto3.client("iam", region_name=region, config=retrying)
        self.iam_once = boto3.client("iam", region_name=region, config=once)
        self.sm = boto3.client("secretsmanager", region_name=region, config=retrying)
        self.failed = False
        self.db = None
        if os.environ.get("ROTATOR_BOT_KEYS__STORE", "secretsmanager") == "gen3workflow-db":
            self.db = TableStore(self.tag)

    # --- inventory ---------------------------------------------------------------

    def users(self) -> tuple[list[str], list[str]]:
        ends, bots = [], []
        for page in self.iam.get_paginator("list_users").paginate():
            for u in page["Users"]:
                name = u["UserName"]
                uid = name[len(self.tag) + 1:]
                if not name.startswith(self.tag + "-") or not uid:
                    continue
                tags = {t["Key"]: t["Value"] for t in self.iam.list_user_tags(UserName=name)["Tags"]}
                if tags.get("name") != self.tag:
                    continue
                (bots if uid.endswith("-bot") and len(uid) > 4 else ends).append(name)
        return sorted(ends), sorted(bots)

    def keys(self, user: str) -> list[dict]:
        return self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]

    # --- store: compare-and-swap ------------------------------------------------------

    def read_store(self, user: str) -> tuple[list[dict], str | None]:
        if self.db is not None:
            return self.db.read(user), None
        try:
            got = self.sm.get_secret_value(SecretId=self.prefix + user, VersionStage="AWSCURRENT")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return [], None
            raise
        entries = json.loads(got["SecretString"])
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and all(isinstance(e.get(f), str) for f in ("access_key_id", "secret_access_key", "created"))
            for e in entries
        ):
            raise ValueError("store value is not a list of entries")
        return entries, got["VersionId"]

    def cas(self, user: str, change) -> None:
        """Apply ``change(entries) -> new entries | None (nothing to do)`` until the store shows it."""
        if self.db is not None:
            return self.db.change(user, change)
        for _ in range(30):
            entries, version = self.read_store(user)
            new = change(entries)
            if new is None:
                return
            new = sorted(new, key=lambda e: e["created"], reverse=True)
            try:
                if version is None:
                    self.sm.create_secret(Name=self.prefix + user, SecretString=json.dumps(new))
                else:
                    token = str(uuid.uuid4())
                    self.sm.put_secret_value(
                        SecretId=self.prefix + user, ClientRequestToken=token, SecretString=json.dumps(new), VersionStages=["AWSPENDING"]
                    )
                    self.sm.update_secret_version_stage(
                        SecretId=self.prefix + user, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=version
                    )
            except (ClientError, BotoCoreError):
                time.sleep(0.05)  # lost a race or an ambiguous answer: the next read tells
        raise RuntimeError("store write did not converge")

    # --- bot users ----------------------------------------------------------------------

    def next_step(self, keys: list[dict], entries: list[dict], now: datetime):
        """The one next thing to do for a bot user, or None when it is done (or blocked)."""
        ids = {k["AccessKeyId"]: k for k in keys}
        stored = {e["access_key_id"] for e in entries}
        stale = stored - set(ids)
        if stale:
            return ("forget", sorted(stale), "stored key no longer in IAM")

        def age(k):
            return now - k["CreateDate"]

        def bad(k):
            return k["Status"] != "Active" or age(k).days > self.bot_lifetime

        for k in keys:
            unstored = k["AccessKeyId"] not in stored
            if unstored and (bad(k) or age(k) >= self.grace):
                return ("delete", k["AccessKeyId"], "orphan or expired, not stored")
        if len(keys) < 2:
            return ("create", None, f"{len(keys)} of 2 keys")
        replace = [k for k in keys if k["AccessKeyId"] in stored and bad(k)]
        good = [k for k in keys if k["AccessKeyId"] in stored and not bad(k)]
        if not replace and len(good) == 2:
            older, newest = sorted(good, key=lambda k: (k["CreateDate"], k["AccessKeyId"]))
            if age(newest) >= timedelta(days=self.bot_lifetime / 2):
                replace = [older]
        if not replace:
            return None
        # Remove one key; the store's first entry must still name a live key afterwards.
        for victim in sorted(replace, key=lambda k: k["CreateDate"]):
            rest = [e for e in entries if e["access_key_id"] != victim["AccessKeyId"]]
            if rest and ids.get(rest[0]["access_key_id"], {}).get("Status") == "Active":
                return ("replace", victim["AccessKeyId"], "expired, inactive or rotation due")
        return None  # blocked, e.g. by a young unstored key (another runner's, or a killed one's): a later run

    def bot(self, user: str, actions: list) -> None:
        for _ in range(16):
            entries, _version = self.read_store(user)  # before IAM: see the note at the top
            keys = self.keys(user)
            step = self.next_step(keys, entries, datetime.now(UTC))
            if step is None:
                return
            kind, target, reason = step
            actions.append({"job": "bot-keys", "kind": kind, "target": f"{user}/{target}" if target else user, "reason": reason})
            if not self.apply:
                actions[-1]["outcome"] = "dry-run"
                return
            if kind == "forget":
                self.cas(user, lambda es, gone=set(target): [e for e in es if e["access_key_id"] not in gone] if any(e["access_key_id"] in gone for e in es) else None)
            elif kind == "delete":
                self.delete_key(user, target)
            elif kind == "replace":
                self.cas(user, lambda es, t=target: [e for e in es if e["access_key_id"] != t] if any(e["access_key_id"] == t for e in es) else None)
                self.delete_key(user, target)
            elif kind == "create":
                self.create(user, {k["AccessKeyId"] for k in keys}, {e["access_key_id"] for e in entries})
            actions[-1]["outcome"] = "done"
        raise RuntimeError("bot user did not settle")

    def delete_key(self, user: str, key_id: str) -> None:
        try:
            self.iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise

    def create(self, user: str, before: set[str], stored: set[str]) -> None:
        for attempt in range(10):
            try:
                made = self.iam_once.create_access_key(UserName=user)["AccessKey"]
                break
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "LimitExceeded":
                    return  # another runner was faster: the caller re-plans
                if code in THROTTLES:
                    time.sleep(0.1 * (attempt + 1))
                    continue
                ambiguous = True
            except BotoCoreError as exc:
                ambiguous = True
                log("create.ambiguous", user=user, error=type(exc).__name__)
            if ambiguous:
                # The key may exist without us knowing its secret: remove what appeared.
                entries, _ = self.read_store(user)
                now_stored = {e["access_key_id"] for e in entries}
                for k in self.keys(user):
                    if k["AccessKeyId"] not in before and k["AccessKeyId"] not in now_stored:
                        log("create.cleanup", user=user, key_id=k["AccessKeyId"])
                        self.delete_key(user, k["AccessKeyId"])
                return
        else:
            raise RuntimeError("CreateAccessKey throttled too often")
        log("key.created", user=user, key_id=made["AccessKeyId"])
        entry = {"access_key_id": made["AccessKeyId"], "secret_access_key": made["SecretAccessKey"], "created": made["CreateDate"].astimezone(UTC).isoformat()}
        del made
        try:
            self.cas(user, lambda es: None if any(e["access_key_id"] == entry["access_key_id"] for e in es) else [entry, *es])
        except Exception:
            entries, _ = self.read_store(user)  # landed after all?
            if not any(e["access_key_id"] == entry["access_key_id"] for e in entries):
                self.delete_key(user, entry["access_key_id"])
            raise

    # --- end users and run secrets -----------------------------------------------------------

    def end_user(self, user: str, actions: list) -> None:
        now = datetime.now(UTC)
        for k in self.keys(user):
            if k["Status"] != "Active" or (now - k["CreateDate"]).days > self.user_lifetime:
                actions.append({"job": "user-keys", "kind": "delete-key", "target": f"{user}/{k['AccessKeyId']}", "reason": "expired"})
                if self.apply:
                    self.delete_key(user, k["AccessKeyId"])
                actions[-1]["outcome"] = "done" if self.apply else "dry-run"

    def run_secrets(self, actions: list) -> None:
        now = datetime.now(UTC)
        for page in self.sm.get_paginator("list_secrets").paginate():
            for s in page["SecretList"]:
                if not RUN_SECRET.match(s["Name"]) or s.get("DeletedDate") or (now - s["CreatedDate"]).days <= self.max_age:
                    continue
                actions.append({"job": "run-secrets", "kind": "delete-secret", "target": s["Name"], "reason": "old"})
                if self.apply:
                    try:
                        self.sm.delete_secret(SecretId=s["Name"], RecoveryWindowInDays=7)
                    except ClientError as exc:
                        if exc.response["Error"]["Code"] not in ("ResourceNotFoundException", "InvalidRequestException"):
                            raise
                actions[-1]["outcome"] = "done" if self.apply else "dry-run"


class TableStore:
    """gen3-workflow's ``system_key`` table (psycopg, one connection, one transaction per change)."""

    def __init__(self, tag: str) -> None:
        import psycopg
        from cryptography.fernet import Fernet

        def setting(name: str, default: str | None = None) -> str | None:
            return os.environ.get(f"ROTATOR_BOT_KEYS__DB__{name}", default)

        def from_file(name: str) -> str:
            with open(setting(name)) as f:
                return f.read().strip()

        self.tag = tag
        self.fernet = Fernet(from_file("ENCRYPTION_KEY_FILE").encode())
        self.conn = psycopg.connect(
            host=setting("HOST"), port=int(setting("PORT", "5432")), user=setting("USER"), dbname=setting("DATABASE"),
            password=from_file("PASSWORD_FILE"), sslmode=setting("SSLMODE", "prefer"), application_name="gen3wf-rotator-reference",
            connect_timeout=10, autocommit=True,
        )
        (kind,) = self.conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'system_key' AND column_name = 'created_time'"
        ).fetchone()
        self.naive = kind == "timestamp without time zone"

    def user_id(self, user: str) -> str:
        return user[len(self.tag) + 1:].removesuffix("-bot")

    def _rows(self, user: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT key_id, key_secret, created_time FROM system_key WHERE user_id = %s ORDER BY created_time DESC, key_id DESC",
            (self.user_id(user),),
        ).fetchall()
        return [
            {"access_key_id": k, "secret_access_key": self.fernet.decrypt(t.encode()).decode(),
             "created": (c.replace(tzinfo=UTC) if c.tzinfo is None else c.astimezone(UTC)).isoformat()}
            for k, t, c in rows
        ]

    def read(self, user: str) -> list[dict]:
        return self._rows(user)

    def change(self, user: str, change) -> None:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s::text))", ("gen3wf-rotator:" + self.user_id(user),))
            old = self._rows(user)
            new = change(old)
            if new is None:
                return
            old_ids, new_ids = {e["access_key_id"] for e in old}, {e["access_key_id"] for e in new}
            gone = sorted(old_ids - new_ids)
            if gone:
                self.conn.execute("DELETE FROM system_key WHERE key_id = ANY(%s)", (gone,))
            for e in new:
                if e["access_key_id"] in old_ids:
                    continue
                created = datetime.fromisoformat(e["created"]).astimezone(UTC)
                self.conn.execute(
                    "INSERT INTO system_key (key_id, key_secret, user_id, created_time) VALUES (%s, %s, %s, %s)",
                    (e["access_key_id"], self.fernet.encrypt(e["secret_access_key"].encode()).decode(), self.user_id(user),
                     created.replace(tzinfo=None) if self.naive else created),
                )


def main() -> int:
    p = argparse.ArgumentParser(prog="reference")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "plan"):
        c = sub.add_parser(name)
        c.add_argument("--job", action="append")
        c.add_argument("--output", default="json")
        c.add_argument("--apply", action="store_true")
    args = p.parse_args()
    ref = Ref(apply=args.command == "run" and args.apply)
    jobs_wanted = args.job or ["user-keys", "bot-keys", "run-secrets"]
    jobs = []

    def contained(job: str, fn, *a) -> None:
        actions = next(j for j in jobs if j["job"] == job)["actions"]
        try:
            fn(*a, actions)
        except Exception as exc:  # noqa: BLE001 - one boundary per user
            ref.failed = True
            actions.append({"job": job, "kind": "error", "target": str(a[0]) if a else job, "reason": type(exc).__name__, "outcome": "failed"})

    try:
        ends, bots = ref.users()
    except (ClientError, BotoCoreError) as exc:
        print(json.dumps({"command": args.command, "exit_code": 1, "error": type(exc).__name__, "jobs": []}))
        return 1
    for job in jobs_wanted:
        jobs.append({"job": job, "actions": []})
        if job == "user-keys":
            for u in ends:
                contained(job, ref.end_user, u)
        elif job == "bot-keys":
            for u in bots:
                contained(job, ref.bot, u)
        elif job == "run-secrets":
            contained(job, lambda actions: ref.run_secrets(actions))
    code = 1 if ref.failed else 0
    print(json.dumps({"command": args.command, "exit_code": code, "jobs": jobs}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
