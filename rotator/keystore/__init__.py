"""Where new bot-key secrets go, so that Gen3Workflow can hand them to TES tasks.

One module per implementation; each exposes a class satisfying :class:`BotKeyStore`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from rotator.errors import ConfigError
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


def make_store(settings, aws) -> BotKeyStore:
    """The store ``ROTATOR_BOT_KEYS__STORE`` names (ConfigError when it cannot be used)."""
    if settings.bot_keys.store == "secretsmanager":
        from rotator.keystore.secretsmanager import SecretsManagerStore

        if aws.region is None:
            raise ConfigError("bot-keys stores secrets in Secrets Manager: set AWS_REGION (or AWS_DEFAULT_REGION)")
        return SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix)
    raise ConfigError(f"ROTATOR_BOT_KEYS__STORE: unknown store {settings.bot_keys.store!r}")
