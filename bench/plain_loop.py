"""The baseline of ``make bench``: what a plain, sequential boto3 script does for the same job.

    python bench/plain_loop.py --hostname HOST [--bots] [--sample-every K]

ListUsers (every page); for every user with the deployment's name prefix, ListAccessKeys; for a
user with something to do, ListUserTags first (ListUsers carries no tags: the ``name`` tag is what
makes a user ours) and then the deletions. With ``--bots``, bot users too: expired keys deleted,
the older key deleted when the newest is lifetime/2 old, keys created until two are live, and the
bot's Secrets Manager entry rewritten once (GetSecretValue, PutSecretValue; no compare-and-swap,
no verification). One call at a time, boto3's default client settings.

``--sample-every K`` lists every user but works on every K-th candidate only (the bench
extrapolates: the loop's wall time is the sum of its calls). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from datetime import UTC, datetime

import boto3

LIFETIME_DAYS = 30


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--bots", action="store_true")
    parser.add_argument("--sample-every", type=int, default=1)
    parser.add_argument("--secret-prefix")
    args = parser.parse_args()
    h = args.hostname.replace(".", "-")
    prefix, tag = f"gen3wf-{h}-", f"gen3wf-{h}"
    secret_prefix = args.secret_prefix or f"gen3wf-rotator/{args.hostname}/bot-keys/"

    started = time.perf_counter()
    session = boto3.session.Session()
    iam = session.client("iam")
    sm = session.client("secretsmanager")
    calls: Counter[str] = Counter()
    for client in (iam, sm):
        client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
    now = datetime.now(UTC)

    def expired(key) -> bool:
        return key["Status"] != "Active" or (now - key["CreateDate"]).days > LIFETIME_DAYS

    def ours(name: str) -> bool:
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
        return tags.get("name") == tag

    names = [u["UserName"] for page in iam.get_paginator("list_users").paginate() for u in page["Users"]]
    candidates = [n for n in names if n.startswith(prefix) and (args.bots or not n.endswith("-bot"))]
    listed = time.perf_counter()
    deleted = created = processed = 0
    for n, name in enumerate(candidates):
        if n % args.sample_every:
            continue
        processed += 1
        keys = sorted(iam.list_access_keys(UserName=name)["AccessKeyMetadata"], key=lambda k: k["CreateDate"])
        doomed = [k for k in keys if expired(k)]
        if not name.endswith("-bot"):
            if doomed and ours(name):
                for key in doomed:
                    iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
                    deleted += 1
            continue
        kept = [k for k in keys if not expired(k)]
        if len(kept) == 2 and (now - kept[1]["CreateDate"]).total_seconds() >= LIFETIME_DAYS / 2 * 86400:
            doomed.append(kept.pop(0))
        if not doomed and len(kept) == 2:
            continue
        if not ours(name):
            continue
        secret_id = secret_prefix + name
        try:
            entries = json.loads(sm.get_secret_value(SecretId=secret_id)["SecretString"])
        except sm.exceptions.ResourceNotFoundException:
            entries = None
        for key in doomed:
            iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
            deleted += 1
        live = {k["AccessKeyId"] for k in kept}
        fresh = []
        for _ in range(2 - len(kept)):
            key = iam.create_access_key(UserName=name)["AccessKey"]
            created += 1
            fresh.append({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"],
                          "created": key["CreateDate"].isoformat()})
        value = json.dumps(fresh[::-1] + [e for e in entries or [] if e["access_key_id"] in live])
        if entries is None:
            sm.create_secret(Name=secret_id, SecretString=value)
        else:
            sm.put_secret_value(SecretId=secret_id, SecretString=value)
    finished = time.perf_counter()
    print(json.dumps({
        "users": len(names), "candidates": len(candidates), "processed": processed, "deleted": deleted, "created": created,
        "listing_seconds": listed - started, "work_seconds": finished - listed, "calls": dict(calls),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
