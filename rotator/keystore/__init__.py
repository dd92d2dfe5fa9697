"""Where new bot-key secrets go, so that Gen3Workflow can hand them to TES tasks.

One module per implementation; each exposes a class satisfying :class:`BotKeyStore`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from rotator.model import NewKey


class BotKeyStore(Protocol):
    name: str
    permissions: tuple[str, ...]

    def index(self) -> Mapping[str, int]:
        """A cheap hint: how many keys the store holds per bot user name (absent: none)."""

    def stored_key_ids(self, user_name: str) -> frozenset[str]:
        """The key ids the store really holds a secret for (authoritative)."""

    def add(self, key: NewKey) -> None:
        """Store a new key so that readers take it first."""

    def remove(self, user_name: str, key_ids: Collection[str]) -> None:
        """Forget these keys; unknown ids are ignored."""
