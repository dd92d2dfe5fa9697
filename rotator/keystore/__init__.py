"""Where new bot-key secrets go, so that Gen3Workflow can hand them to TES tasks.

One module per implementation; each exposes a class satisfying :class:`BotKeyStore`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from rotator.aws import SafeError
from rotator.errors import ConfigError
from rotator.model import NewKey

KEY_ID = "access_key_id"


class StoreUnreadable(SafeError):
    """A user's stored value fails validation: that user is left alone, never repaired by deleting keys."""


class StoreConflict(SafeError):
    """Other writers kept changing the value while we tried to write it."""


class WouldEmptyStore(SafeError):
    """A removal would leave a bot user with no stored key: refused (the service needs one)."""


class BotKeyStore(Protocol):
    name: str
    permissions: tuple[str, ...]

    def index(self) -> Mapping[str, int]:
        """A cheap hint: how many keys the store holds per bot user name (absent: none)."""

    def stored_key_ids(self, user_name: str) -> frozenset[str]:
        """The key ids the store really holds a secret for (authoritative; StoreUnreadable if invalid)."""

    def first_key_id(self, user_name: str) -> str | None:
        """The key id a reader takes now, or None."""

    def add_pending(self, key: NewKey) -> None:
        """Keep a new key's secret durably where readers do not take it yet (or do nothing, if the
        store has no such state: then ``add`` must only be called once the key is verified)."""

    def add(self, key: NewKey) -> None:
        """Store a new key so that readers take it first (a compare-and-swap: no writer's entry is lost)."""

    def remove(self, user_name: str, key_ids: Collection[str], *, keep_one: bool = False) -> None:
        """Forget these keys; unknown ids are ignored. ``keep_one``: WouldEmptyStore rather than leave none."""


def make_store(settings, aws) -> BotKeyStore:
    """The store ``ROTATOR_BOT_KEYS__STORE`` names (ConfigError when it cannot be used)."""
    if settings.bot_keys.store == "secretsmanager":
        from rotator.keystore.secretsmanager import SecretsManagerStore

        if aws.region is None:
            raise ConfigError("bot-keys stores secrets in Secrets Manager: set AWS_REGION (or AWS_DEFAULT_REGION)")
        return SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix)
    if settings.bot_keys.store == "gen3workflow-db":
        from rotator.keystore.gen3workflow_db import Gen3WorkflowDbStore, conninfo_from

        db = settings.bot_keys.db
        return Gen3WorkflowDbStore(
            conninfo=conninfo_from(
                host=db.host, port=db.port, user=db.user, password=db.password_value(), dbname=db.database,
                sslmode=db.sslmode, sslrootcert=str(db.sslrootcert) if db.sslrootcert else None,
            ),
            encryption_key=db.encryption_key_value(),
            hostname=settings.hostname,
            pool_size=min(settings.aws.concurrency, 8),
        )
    raise ConfigError(f"ROTATOR_BOT_KEYS__STORE: unknown store {settings.bot_keys.store!r}")
