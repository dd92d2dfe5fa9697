"""Seeding helpers for moto-backed tests: real API calls, keys aged in the emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from moto.iam.models import iam_backends

from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import NewKey
from rotator.names import owner_tag_value

ACCOUNT = "123456789012"
HOST = "gen3.example.org"
TAG = owner_tag_value(HOST)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_user(iam, name: str, tag: str | None) -> None:
    iam.create_user(UserName=name, Tags=[{"Key": "name", "Value": tag}] if tag else [])


def make_key(iam, user: str, *, created: datetime, active: bool = True, store: SecretsManagerStore | None = None) -> NewKey:
    raw = iam.create_access_key(UserName=user)["AccessKey"]
    for key in iam_backends[ACCOUNT]["global"].users[user].access_keys:
        if key.access_key_id == raw["AccessKeyId"]:
            key.create_date = created  # moto stamps "now"; age the key
    if not active:
        iam.update_access_key(UserName=user, AccessKeyId=raw["AccessKeyId"], Status="Inactive")
    key = NewKey(user=user, key_id=raw["AccessKeyId"], created=created, secret=raw["SecretAccessKey"])
    if store is not None:
        store.add(key)
    return key


def key_ids(iam, user: str) -> set[str]:
    return {k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}


def days(n: float) -> timedelta:
    return timedelta(days=n)
