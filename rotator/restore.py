"""``rotator restore-secrets``: undo run-secrets deletions inside the recovery window.

The run-secrets job tags each secret with the run id just before deleting it; this finds
secrets pending deletion that carry that tag, restores them and removes the tag.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from rotator.aws import describe_error
from rotator.jobs.run_secrets import DELETED_AT_TAG, DELETED_FOR_RUN_TAG

log = structlog.get_logger("rotator.restore")

PERMISSIONS = ("secretsmanager:ListSecrets", "secretsmanager:RestoreSecret", "secretsmanager:UntagResource")


@dataclass(frozen=True)
class Restored:
    name: str
    run_id: str
    outcome: str
    error: str | None = None


def restore_secrets(sm, *, run_ids: Collection[str] | None) -> list[Restored]:
    """Restore what run-secrets scheduled for deletion: for these runs, or all (``None``)."""
    results = []
    pages = sm.get_paginator("list_secrets").paginate(
        IncludePlannedDeletion=True, Filters=[{"Key": "tag-key", "Values": [DELETED_FOR_RUN_TAG]}]
    )
    for page in pages:
        for entry in page.get("SecretList", []):
            tags = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}
            run_id = tags.get(DELETED_FOR_RUN_TAG)
            if run_id is None or "DeletedDate" not in entry:
                continue
            if run_ids is not None and run_id not in run_ids:
                continue
            try:
                sm.restore_secret(SecretId=entry["ARN"])
                sm.untag_resource(SecretId=entry["ARN"], TagKeys=[DELETED_FOR_RUN_TAG, DELETED_AT_TAG])
            except (ClientError, BotoCoreError) as exc:
                results.append(Restored(entry["Name"], run_id, "failed", describe_error(exc)))
                log.error("secret.restore_failed", secret=entry["Name"], run_id=run_id, error=describe_error(exc))
                continue
            results.append(Restored(entry["Name"], run_id, "restored"))
            log.info("secret.restored", secret=entry["Name"], run_id=run_id)
    return sorted(results, key=lambda r: r.name)
