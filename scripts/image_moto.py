#!/usr/bin/env python3
"""An AWS emulator on the host for scripts/test-image.sh: serve it, seed it, check what a run did.

    image_moto.py serve PORT_FILE        # moto on 127.0.0.1 (a free port, written to PORT_FILE) until SIGTERM
    image_moto.py seed URL HOSTNAME      # one end user with a live and an inactive key, one bot user, one stranger
    image_moto.py check URL HOSTNAME unchanged|applied

Runs with the repository's venv (moto[server], boto3); the image under test never contains moto.
Never prints a key secret.
"""

from __future__ import annotations

import signal
import sys
import threading

import boto3

REGION = "us-east-1"


def _names(hostname: str) -> dict[str, str]:
    prefix = "gen3wf-" + hostname.replace(".", "-")
    return {"tag": prefix, "user": f"{prefix}-alice", "bot": f"{prefix}-alice-bot", "stranger": f"{prefix}-stranger"}


def _iam(url: str):
    return boto3.client("iam", endpoint_url=url, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def serve(port_file: str) -> int:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with open(port_file, "w") as f:
        f.write(str(server.get_host_and_port()[1]))
    stop.wait()
    server.stop()
    return 0


def seed(url: str, hostname: str) -> int:
    iam, n = _iam(url), _names(hostname)
    tag = [{"Key": "name", "Value": n["tag"]}]
    iam.create_user(UserName=n["user"], Tags=tag)
    iam.create_access_key(UserName=n["user"])
    inactive = iam.create_access_key(UserName=n["user"])["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName=n["user"], AccessKeyId=inactive, Status="Inactive")
    iam.create_user(UserName=n["bot"], Tags=tag)
    # Named like ours but without the tag: never ours, never touched.
    iam.create_user(UserName=n["stranger"])
    stranger = iam.create_access_key(UserName=n["stranger"])["AccessKey"]["AccessKeyId"]
    iam.update_access_key(UserName=n["stranger"], AccessKeyId=stranger, Status="Inactive")
    print(f"seeded {n['user']} (1 live, 1 inactive key), {n['bot']} (no key), {n['stranger']} (untagged)")
    return 0


def check(url: str, hostname: str, expect: str) -> int:
    iam, n = _iam(url), _names(hostname)

    def keys(user: str) -> dict[str, int]:
        states: dict[str, int] = {}
        for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
            states[key["Status"]] = states.get(key["Status"], 0) + 1
        return states

    sm = boto3.client("secretsmanager", endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    stored = [s["Name"] for s in sm.list_secrets()["SecretList"] if s["Name"].startswith("gen3wf-rotator/")]
    seen = {"user": keys(n["user"]), "bot": keys(n["bot"]), "stranger": keys(n["stranger"]), "stored": len(stored)}
    if expect == "unchanged":
        wanted = {"user": {"Active": 1, "Inactive": 1}, "bot": {}, "stranger": {"Inactive": 1}, "stored": 0}
        ok = seen == wanted
    else:
        ok = (
            seen["user"] == {"Active": 1}  # the inactive (expired) key deleted, the live one kept
            and seen["bot"].get("Active", 0) >= 1 and "Inactive" not in seen["bot"]  # the bot user got a key…
            and seen["stored"] >= 1  # …stored in Secrets Manager
            and seen["stranger"] == {"Inactive": 1}  # not ours: untouched
        )
    print(f"{'ok' if ok else 'UNEXPECTED'} ({expect}): {seen}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "serve":
        return serve(argv[1])
    if len(argv) == 3 and argv[0] == "seed":
        return seed(argv[1], argv[2])
    if len(argv) == 4 and argv[0] == "check" and argv[3] in ("unchanged", "applied"):
        return check(argv[1], argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
