"""Read-only listing of run secrets in AWS Secrets Manager. Values are never read."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from rotator.model import RunSecret

PERMISSIONS = ("secretsmanager:ListSecrets", "secretsmanager:DescribeSecret")

_META = set(".^$*+?{}[]\\|()")


def pattern_prefix(pattern: str) -> str:
    """The literal text every match starts with (``^tower-(?P<run_id>…)`` -> ``tower-``)."""
    if not pattern.startswith("^"):
        return ""
    prefix = []
    for char in pattern[1:]:
        if char in _META:
            break
        prefix.append(char)
    return "".join(prefix)


def list_run_secrets(sm, *, patterns: Sequence[str], exclude_prefixes: Iterable[str] = ()) -> tuple[RunSecret, ...]:
    """Secrets whose name has a pattern's literal prefix, parsed for their run id.

    A name with the prefix that the pattern does not match gets ``run_id=None`` (skipped
    and counted by the planner, never guessed at). Names under ``exclude_prefixes`` (the
    bot-key store) are never returned, whatever the patterns say.
    """
    compiled = [re.compile(p) for p in patterns]
    excluded = tuple(exclude_prefixes)
    found: dict[str, RunSecret] = {}
    for regex in compiled:
        prefix = pattern_prefix(regex.pattern)
        kwargs = {"IncludePlannedDeletion": True}
        if prefix:
            # AWS's name filter is a case-insensitive prefix match; the exact check follows.
            kwargs["Filters"] = [{"Key": "name", "Values": [prefix]}]
        for page in sm.get_paginator("list_secrets").paginate(**kwargs):
            for entry in page.get("SecretList", []):
                name = entry["Name"]
                if name in found or not name.startswith(prefix) or name.startswith(excluded):
                    continue
                match = regex.match(name)
                if match is None and any(other.match(name) for other in compiled):
                    continue  # another pattern claims it
                found[name] = RunSecret(
                    name=name,
                    arn=entry["ARN"],
                    created=entry["CreatedDate"],
                    run_id=match.group("run_id") if match else None,
                    pending_deletion="DeletedDate" in entry,
                    primary_region=entry.get("PrimaryRegion"),
                )
    return tuple(sorted(found.values(), key=lambda s: s.name))


def describe_replication(sm, secret: RunSecret) -> RunSecret:
    """The same secret with ``replica_regions`` filled in from DescribeSecret."""
    described = sm.describe_secret(SecretId=secret.arn)
    regions = tuple(r["Region"] for r in described.get("ReplicationStatus", []))
    return RunSecret(**{**secret.__dict__, "replica_regions": regions})
