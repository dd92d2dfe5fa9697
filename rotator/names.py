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


def parse_user_name(name: str, *, hostname: str) -> ParsedName | None:
    """Map an IAM user name back to the Gen3 user id it was built from, or None.

    A name is accepted only when the service's own rule rebuilds it exactly. With a
    hostname long enough to be cut, and user ids containing dashes, two ids can give
    the same name; the least-cut reading is returned. Both readings are the same IAM
    user with the same suffix, so the kind (user or bot) never depends on the choice.
    """
    prefix = owner_tag_value(hostname)
    for cut in range(len(prefix), 0, -1):
        head = prefix[:cut] + "-"
        if not name.startswith(head):
            continue
        raw_id = name[len(head):]
        if raw_id and iam_user_name(hostname, raw_id) == name:
            return _classify(raw_id)
    return None


def _classify(raw_id: str) -> ParsedName:
    if raw_id.endswith(BOT_SUFFIX) and len(raw_id) > len(BOT_SUFFIX):
        return ParsedName(user_id=raw_id[: -len(BOT_SUFFIX)], kind="bot")
    return ParsedName(user_id=raw_id, kind="user")
