"""Read-only listing of run secrets in AWS Secrets Manager. Values are never read."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from rotator.model import RunSecret

PERMISSIONS = ("secretsmanager:ListSecrets", "secretsmanager:DescribeSecret")

_STOP = set(".^$[]()\\|")
_OPTIONAL = set("?*")  # the character before may be absent
_REPEAT = set("+{")  # the character before is there at least once, then anything may follow


def pattern_prefixes(pattern: str) -> tuple[str, ...]:
    """The literal texts every match starts with, one per top-level alternative.

    ``^tower-(?P<run_id>…)`` -> ``("tower-",)``; ``^towers?-`` -> ``("tower",)``;
    ``^tower-|^nf-`` -> ``("tower-", "nf-")``. An alternative without a leading ``^`` (or
    starting with a group or class) gives ``""``: everything must be listed. A prefix is
    only ever too short, never too long, so no matching secret is missed.
    """
    return tuple(dict.fromkeys(_literal_prefix(alt) for alt in _top_level_alternatives(pattern)))


def _top_level_alternatives(pattern: str) -> list[str]:
    alternatives, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            alternatives.append(pattern[start:i])
            start = i + 1
        i += 1
    alternatives.append(pattern[start:])
    return alternatives


def _literal_prefix(alternative: str) -> str:
    if not alternative.startswith("^"):
        return ""
    prefix: list[str] = []
    i = 1
    while i < len(alternative):
        char = alternative[i]
        if char == "\\":
            escaped = alternative[i + 1 : i + 2]
            if not escaped or escaped.isalnum():  # \d, \w, \A, backreferences…: not a literal
                break
            char, width = escaped, 2
        elif char in _STOP or char in _OPTIONAL or char in _REPEAT:
            break
        else:
            width = 1
        following = alternative[i + width : i + width + 1]
        if following in _OPTIONAL or (following == "{" and _may_repeat_zero(alternative[i + width :])):
            break
        prefix.append(char)
        if following in _REPEAT:
            break
        i += width
    return "".join(prefix)


def _may_repeat_zero(quantifier: str) -> bool:
    """Whether ``{m,n}`` (at the start of ``quantifier``) allows zero repetitions; a ``{`` that is
    not a quantifier is treated as one that does (a prefix may be too short, never too long)."""
    match = re.match(r"\{(\d*)(,\d*)?\}", quantifier)
    return match is None or not match.group(1) or int(match.group(1)) == 0


def list_run_secrets(
    sm, *, patterns: Sequence[str], exclude_prefixes: Iterable[str] = (), region: str | None = None
) -> tuple[RunSecret, ...]:
    """Secrets whose name has a pattern's literal prefix, parsed for their run id.

    A name with the prefix that the pattern does not match gets ``run_id=None`` (skipped
    and counted by the planner, never guessed at). Names under ``exclude_prefixes`` (the
    bot-key store) are never returned, whatever the patterns say.
    """
    compiled = [re.compile(p) for p in patterns]
    excluded = tuple(exclude_prefixes)
    prefixes = sorted({prefix for regex in compiled for prefix in pattern_prefixes(regex.pattern)})
    if "" in prefixes:
        prefixes = [""]  # one pattern needs every secret listed: once is enough
    found: dict[str, RunSecret] = {}
    for prefix in prefixes:
        kwargs = {"IncludePlannedDeletion": True}
        if prefix:
            # AWS's name filter is a case-insensitive prefix match; the exact check follows.
            kwargs["Filters"] = [{"Key": "name", "Values": [prefix]}]
        for page in sm.get_paginator("list_secrets").paginate(**kwargs):
            for entry in page.get("SecretList", []):
                name = entry["Name"]
                if name in found or not name.startswith(prefix) or name.startswith(excluded):
                    continue
                match = next((m for m in (regex.match(name) for regex in compiled) if m), None)
                if match is None and not prefix:
                    continue  # listed unfiltered: without a prefix, a non-match is simply not ours
                found[name] = RunSecret(
                    name=name,
                    arn=entry["ARN"],
                    created=entry["CreatedDate"],
                    run_id=match.group("run_id") if match else None,
                    pending_deletion="DeletedDate" in entry,
                    primary_region=entry.get("PrimaryRegion"),
                    region=region,
                )
    return tuple(sorted(found.values(), key=lambda s: s.name))


def describe_replication(sm, secret: RunSecret) -> RunSecret:
    """The same secret with ``replica_regions`` filled in from DescribeSecret."""
    described = sm.describe_secret(SecretId=secret.arn)
    regions = tuple(r["Region"] for r in described.get("ReplicationStatus", []))
    return RunSecret(**{**secret.__dict__, "replica_regions": regions})
