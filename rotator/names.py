"""Gen3Workflow's IAM user naming rule, and its inverse.

The service names a user ``gen3wf-<H>-<userid>`` (``<H>`` = hostname with dots as
dashes) and cuts the ``gen3wf-<H>`` part so the whole name is at most 63 characters.
Every user it creates carries the tag ``name`` = ``gen3wf-<H>`` (never cut).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAME_PREFIX = "gen3wf-"
OWNER_TAG = "name"
BOT_SUFFIX = "-bot"
MAX_NAME_LENGTH = 63

UserKind = Literal["user", "bot"]


def owner_tag_value(hostname: str) -> str:
    """The value of the ``name`` tag the service puts on every user of ``hostname``."""
    return NAME_PREFIX + hostname.replace(".", "-")


def iam_user_name(hostname: str, user_id: str) -> str:
    """The IAM user name the service builds for a Gen3 user id (mirrors the service exactly)."""
    safe_name = owner_tag_value(hostname)
    limit = MAX_NAME_LENGTH - len(f"-{user_id}")
    if len(safe_name) > limit:
        safe_name = safe_name[:limit]
    return f"{safe_name}-{user_id}"


def bot_user_name(hostname: str, user_id: str) -> str:
    return iam_user_name(hostname, user_id + BOT_SUFFIX)


@dataclass(frozen=True)
class ParsedName:
    user_id: str
    """The Gen3 user id (without ``-bot`` for a bot user)."""
    kind: UserKind


class AmbiguousName(ValueError):
    """A name the service's rule builds from ids of different kinds: never guessed at."""


def parse_user_name(name: str, *, hostname: str) -> ParsedName | None:
    """Map an IAM user name back to the Gen3 user id it was built from, or None.

    A name is accepted only when the service's own rule rebuilds it exactly. With a
    hostname long enough to be cut, several ids can give the same name (the bot of user
    ``1`` and an end user ``bot`` with a less-cut prefix). Readings whose id is a Gen3
    (Fence) user id, digits, are preferred; if the readings left still disagree on the
    kind, :class:`AmbiguousName` is raised.
    """
    readings = user_name_readings(name, hostname=hostname)
    if not readings:
        return None
    fence = [r for r in readings if r.user_id.isdigit()]
    candidates = fence or readings
    if len({r.kind for r in candidates}) > 1:
        raise AmbiguousName(f"{name} reads as both an end user and a bot user")
    return candidates[0]


def user_name_readings(name: str, *, hostname: str) -> list[ParsedName]:
    """Every (id, kind) the service's rule turns into exactly ``name``, least-cut first."""
    prefix = owner_tag_value(hostname)
    readings = []
    for cut in range(len(prefix), 0, -1):
        head = prefix[:cut] + "-"
        if not name.startswith(head):
            continue
        raw_id = name[len(head):]
        if raw_id and iam_user_name(hostname, raw_id) == name:
            readings.append(_classify(raw_id))
    return readings


def _classify(raw_id: str) -> ParsedName:
    if raw_id.endswith(BOT_SUFFIX) and len(raw_id) > len(BOT_SUFFIX):
        return ParsedName(user_id=raw_id[: -len(BOT_SUFFIX)], kind="bot")
    return ParsedName(user_id=raw_id, kind="user")
