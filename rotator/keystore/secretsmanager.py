"""Bot-key store in AWS Secrets Manager: one secret per bot user.

Secret ``<prefix><iam user name>``; its value is a JSON list of that user's live keys,
newest first (``access_key_id``, ``secret_access_key``, ``created``): a reader takes
the first. The secret's description lists the key ids (never secrets) so that one
paginated ListSecrets tells which bot users may need a closer look; value and
description are written together by one UpdateSecret call.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

import structlog
from botocore.exceptions import ClientError

from rotator.model import NewKey

log = structlog.get_logger("rotator.keystore")

_IDS_MARK = "key ids: "


class SecretsManagerStore:
    name = "secretsmanager"
    permissions = (
        "secretsmanager:ListSecrets",
        "secretsmanager:GetSecretValue",
        "secretsmanager:CreateSecret",
        "secretsmanager:UpdateSecret",
        "secretsmanager:TagResource",  # CreateSecret with Tags needs it
    )

    def __init__(self, client, *, prefix: str) -> None:
        self._sm = client
        self.prefix = prefix

    def secret_name(self, user_name: str) -> str:
        return self.prefix + user_name

    def index(self) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        paginator = self._sm.get_paginator("list_secrets")
        for page in paginator.paginate(Filters=[{"Key": "name", "Values": [self.prefix]}]):
            for secret in page.get("SecretList", []):
                name = secret["Name"]
                if not name.startswith(self.prefix) or secret.get("DeletedDate"):
                    continue
                counts[name[len(self.prefix):]] = len(_ids_from_description(secret.get("Description", "")))
        return counts

    def stored_key_ids(self, user_name: str) -> frozenset[str]:
        return frozenset(entry["access_key_id"] for entry in self._read(user_name) or [])

    def add(self, key: NewKey) -> None:
        entries = self._read(key.user)
        new_entry = {"access_key_id": key.key_id, "secret_access_key": key.secret, "created": key.created.isoformat()}
        if entries is None:
            self._sm.create_secret(
                Name=self.secret_name(key.user),
                SecretString=json.dumps([new_entry]),
                Description=_description(key.user, [key.key_id]),
                Tags=[{"Key": "managed-by", "Value": "gen3wf-rotator"}, {"Key": "gen3wf-bot-user", "Value": key.user}],
            )
            return
        entries = [new_entry] + [e for e in entries if e["access_key_id"] != key.key_id]
        self._write(key.user, entries)

    def remove(self, user_name: str, key_ids: Collection[str]) -> None:
        entries = self._read(user_name)
        if entries is None:
            return
        kept = [e for e in entries if e["access_key_id"] not in set(key_ids)]
        if len(kept) != len(entries):
            self._write(user_name, kept)

    def _read(self, user_name: str) -> list[dict] | None:
        try:
            value = self._sm.get_secret_value(SecretId=self.secret_name(user_name))["SecretString"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        entries = json.loads(value)
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "access_key_id" in e for e in entries):
            # Do not echo the value: it holds secrets.
            raise ValueError(f"secret {self.secret_name(user_name)} does not hold a list of keys")
        return entries

    def _write(self, user_name: str, entries: list[dict]) -> None:
        entries = sorted(entries, key=lambda e: e.get("created", ""), reverse=True)
        self._sm.update_secret(
            SecretId=self.secret_name(user_name),
            SecretString=json.dumps(entries),
            Description=_description(user_name, [e["access_key_id"] for e in entries]),
        )


def _description(user_name: str, key_ids: list[str]) -> str:
    return f"Gen3Workflow bot keys of {user_name}, managed by gen3wf-rotator; {_IDS_MARK}{','.join(key_ids)}"


def _ids_from_description(description: str) -> list[str]:
    _, mark, ids = description.partition(_IDS_MARK)
    return [i for i in ids.split(",") if i] if mark else []
