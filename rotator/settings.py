"""Settings: ``ROTATOR_*`` environment variables, optionally seeded from Gen3Workflow's config.

Precedence, highest first: our own variables, the Gen3Workflow config file named by
``ROTATOR_GEN3WORKFLOW_CONFIG``, the defaults. Every value is validated here, before
any AWS call; a bad one raises :class:`ConfigError` naming the variable (exit code 2).
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from rotator.errors import AccountNotAllowed, ConfigError
from rotator.jobs import REGISTRY, setting_key
from rotator.logs import remember_secret
from rotator.names import owner_tag_value

__all__ = ["AccountNotAllowed", "ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "ROTATOR_"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
DEFAULT_RUN_SECRET_PATTERN = r"^tower-(?P<run_id>[A-Za-z0-9]{1,16})/[A-Za-z_][A-Za-z0-9_]*$"

# Gen3Workflow config key -> our setting (as a path into Settings)
GEN3WORKFLOW_KEYS: dict[str, tuple[str, ...]] = {
    "HOSTNAME": ("hostname",),
    "IAM_KEYS_LIFETIME_DAYS": ("user_keys", "lifetime_days"),
    "DB_HOST": ("bot_keys", "db", "host"),
    "DB_PORT": ("bot_keys", "db", "port"),
    "DB_USER": ("bot_keys", "db", "user"),
    "DB_PASSWORD": ("bot_keys", "db", "password"),
    "DB_DATABASE": ("bot_keys", "db", "database"),
    "ENCRYPTION_KEY": ("bot_keys", "db", "encryption_key"),
}
# The service lets environment variables of these names override its file; so does rotator.
SERVICE_ENV_OVERRIDES = ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_DATABASE")
# Secrets come from files (a mounted Secret) or the service's config, never a variable's value.
_VALUE_ONLY_FROM_FILES = {"ROTATOR_BOT_KEYS__DB__PASSWORD": "_FILE", "ROTATOR_BOT_KEYS__DB__ENCRYPTION_KEY": "_FILE"}

AccountId = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserKeysSettings(_Section):
    lifetime_days: int = Field(30, ge=1, le=3650)
    delete_inactive: bool = True


_CREDENTIAL = re.compile(r"[!-~]+")  # printable ASCII, no whitespace: what an HTTP header can carry intact
_CREDENTIAL_RULE = "must be printable ASCII without whitespace (the value is not shown)"


def _credential(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not _CREDENTIAL.fullmatch(value.get_secret_value()):
        raise ValueError(_CREDENTIAL_RULE)
    return value


Credential = Annotated[SecretStr, AfterValidator(_credential)]
"""A token or password: never in ``repr``, ``model_dump`` or an error message."""


class DbSettings(_Section):
    """The ``gen3workflow-db`` store: Gen3Workflow's own PostgreSQL database and Fernet key."""

    host: str | None = Field(None, min_length=1, max_length=253)
    port: int = Field(5432, ge=1, le=65535)
    user: str | None = Field(None, min_length=1, max_length=63)
    database: str | None = Field(None, min_length=1, max_length=63)
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    sslrootcert: Path | None = None
    password: SecretStr | None = None
    """Only from the Gen3Workflow config (DB_PASSWORD); as a variable, use ``__PASSWORD_FILE``."""
    password_file: Path | None = None
    encryption_key: Credential | None = None
    """Only from the Gen3Workflow config (ENCRYPTION_KEY); as a variable, use ``__ENCRYPTION_KEY_FILE``."""
    encryption_key_file: Path | None = None

    def password_value(self) -> str | None:
        if self.password_file is not None:
            return read_secret_file(self.password_file, "ROTATOR_BOT_KEYS__DB__PASSWORD_FILE")
        return _secret(self.password, None, "")

    def encryption_key_value(self) -> str | None:
        return _secret(self.encryption_key, self.encryption_key_file, "ROTATOR_BOT_KEYS__DB__ENCRYPTION_KEY_FILE")


class BotKeysSettings(_Section):
    lifetime_days: int = Field(30, ge=1, le=3650)
    store: Literal["secretsmanager", "gen3workflow-db"] = "secretsmanager"
    db: DbSettings = DbSettings()
    secret_prefix: str | None = Field(None, min_length=1, max_length=400, pattern=r"^[A-Za-z0-9/_+=.@-]+$")
    orphan_grace_minutes: int = Field(60, ge=0, le=7 * 24 * 60)
    verify_timeout_seconds: float = Field(120, ge=0, le=3600)
    """A new key must answer sts:GetCallerIdentity within this before readers can take it (0: no check)."""

    @model_validator(mode="after")
    def _store_is_usable(self) -> "BotKeysSettings":
        if self.store != "gen3workflow-db":
            return self
        db, var = self.db, "ROTATOR_BOT_KEYS__DB__"
        missing = [f"{var}{name.upper()} (or DB_{name.upper()} in the Gen3Workflow config)"
                   for name in ("host", "user", "database") if not getattr(db, name)]
        if not (db.password or db.password_file):
            missing.append(f"{var}PASSWORD_FILE (or DB_PASSWORD in the Gen3Workflow config)")
        if not (db.encryption_key or db.encryption_key_file):
            missing.append(f"{var}ENCRYPTION_KEY_FILE (or ENCRYPTION_KEY in the Gen3Workflow config)")
        if missing:
            raise ValueError("store gen3workflow-db needs " + ", ".join(missing))
        for path, name in ((db.password_file, "PASSWORD_FILE"), (db.encryption_key_file, "ENCRYPTION_KEY_FILE"),
                           (db.sslrootcert, "SSLROOTCERT")):
            if path is not None and not path.is_file():
                raise ValueError(f"{var}{name}: {path} is not a file")
        return self


_URL = r"^https?://[^\s/$.?#][^\s]*$"


def _no_credentials(url: str | None) -> str | None:
    """A URL must not carry ``user:password@``: it would show wherever the URL does (logs, ``rotator config``)."""
    if url and "@" in urlsplit(url).netloc:
        raise ValueError("must not hold credentials (user:password@): give them in the setting's *_FILE (and USERNAME)")
    return url


ServiceUrl = Annotated[str | None, Field(pattern=_URL), AfterValidator(_no_credentials)]




class SeqeraSettings(_Section):
    url: ServiceUrl = None
    token: Credential | None = None
    token_file: Path | None = None
    workspace_id: str | None = Field(None, pattern=r"^\d+$")
    """Shorthand for a one-element ``workspace_ids``."""
    workspace_ids: list[Annotated[str, StringConstraints(pattern=r"^\d+$")]] = Field(default_factory=list, max_length=50)

    def token_value(self) -> str | None:
        """The token itself (from the setting, or read from its file now)."""
        return _secret(self.token, self.token_file, "ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE")

    def all_workspace_ids(self) -> list[str]:
        """The workspaces a run is looked up in, in turn."""
        return list(dict.fromkeys(([self.workspace_id] if self.workspace_id else []) + self.workspace_ids))


class TesSettings(_Section):
    url: ServiceUrl = None
    token: Credential | None = None
    token_file: Path | None = None
    username: str | None = Field(None, pattern=r"^[!-9;-~]+$")  # no ":" in a Basic-auth user name
    password: Credential | None = None
    password_file: Path | None = None

    def token_value(self) -> str | None:
        """The token itself (from the setting, or read from its file now)."""
        return _secret(self.token, self.token_file, "ROTATOR_RUN_SECRETS__TES__TOKEN_FILE")

    def password_value(self) -> str | None:
        return _secret(self.password, self.password_file, "ROTATOR_RUN_SECRETS__TES__PASSWORD_FILE")


def read_secret_file(path: Path, variable: str) -> str:
    """A token or password from a mounted file, read at each use so that a rotated mount is picked up."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}: {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{variable}: {path} is empty")
    if not _CREDENTIAL.fullmatch(value):
        raise ConfigError(f"{variable}: the content of {path} {_CREDENTIAL_RULE}")
    remember_secret(value)
    return value


def _secret(value: SecretStr | None, path: Path | None, variable: str) -> str | None:
    if path is not None:
        return read_secret_file(path, variable)
    if value is None:
        return None
    remember_secret(value.get_secret_value())
    return value.get_secret_value()


class RunSecretsSettings(_Section):
    patterns: list[str] = Field(default_factory=lambda: [DEFAULT_RUN_SECRET_PATTERN], min_length=1)
    status_source: Literal["seqera", "tes", "none"] = "none"
    seqera: SeqeraSettings = SeqeraSettings()
    tes: TesSettings = TesSettings()
    timeout_seconds: float = Field(10, gt=0, le=300)
    min_age_minutes: int = Field(60, ge=0)
    max_age_days: int = Field(30, ge=1)
    recovery_window_days: int = 7
    remove_replicas: bool = False
    regions: list[Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]] | None = Field(None, min_length=1)
    """Regions to clean (default: the AWS region)."""
    error_grace_minutes: int = Field(360, ge=0, le=30 * 24 * 60)
    """TES error states count as final only this long after the task's end time."""

    @field_validator("patterns")
    @classmethod
    def _patterns_have_run_id(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regex: {exc}") from None
            if "run_id" not in compiled.groupindex:
                raise ValueError(f"{pattern!r} has no named group 'run_id'")
        return patterns

    @model_validator(mode="after")
    def _source_is_usable(self) -> "RunSecretsSettings":
        if self.status_source == "seqera":
            if not self.seqera.url:
                raise ValueError("status_source seqera needs ROTATOR_RUN_SECRETS__SEQERA__URL")
            if not (self.seqera.token or self.seqera.token_file):
                raise ValueError("status_source seqera needs ROTATOR_RUN_SECRETS__SEQERA__TOKEN or __TOKEN_FILE")
        if self.status_source == "tes":
            if not self.tes.url:
                raise ValueError("status_source tes needs ROTATOR_RUN_SECRETS__TES__URL")
            if DEFAULT_RUN_SECRET_PATTERN in self.patterns:
                raise ValueError(
                    "status_source tes with the Seqera pattern tower-<workflowId>/…: a Seqera workflow id is never a TES"
                    " task id; set ROTATOR_RUN_SECRETS__PATTERNS to patterns whose run_id group is the TES task id"
                )
            if (self.tes.token or self.tes.token_file) and self.tes.username:
                raise ValueError("TES auth: set a token (Bearer) or a username/password (Basic), not both")
        for section, var in ((self.seqera, "SEQERA"), (self.tes, "TES")):
            if section.token and section.token_file:
                raise ValueError(f"set ROTATOR_RUN_SECRETS__{var}__TOKEN or __TOKEN_FILE, not both")
            if section.token_file is not None and not section.token_file.is_file():
                raise ValueError(f"ROTATOR_RUN_SECRETS__{var}__TOKEN_FILE: {section.token_file} is not a file")
        if self.tes.password and self.tes.password_file:
            raise ValueError("set ROTATOR_RUN_SECRETS__TES__PASSWORD or __PASSWORD_FILE, not both")
        if self.tes.password_file is not None and not self.tes.password_file.is_file():
            raise ValueError(f"ROTATOR_RUN_SECRETS__TES__PASSWORD_FILE: {self.tes.password_file} is not a file")
        return self

    @field_validator("recovery_window_days")
    @classmethod
    def _recovery_window(cls, days: int) -> int:
        if days != 0 and not 7 <= days <= 30:
            raise ValueError("must be 0 (no recovery) or between 7 and 30")
        return days


class _ScheduleBase(_Section):
    run_on_start: bool = False
    jitter_seconds: int = Field(60, ge=0, le=3600)
    shutdown_grace_seconds: int = Field(120, ge=0, le=3600)

    @field_validator(*(setting_key(job.name) for job in REGISTRY), check_fields=False)
    @classmethod
    def _crontab(cls, expression: str) -> str:
        from rotator.schedule import cron_trigger

        expression = expression.strip()
        if expression:
            cron_trigger(expression)  # raises ValueError with the reason
        return expression

    def expressions(self) -> dict[str, str]:
        """Enabled jobs and their crontab: an empty expression disables a job."""
        crontabs = {job.name: getattr(self, setting_key(job.name)) for job in REGISTRY}
        return {job: expr for job, expr in crontabs.items() if expr}


# One crontab per registered job: ROTATOR_SCHEDULE__USER_KEYS, ROTATOR_SCHEDULE__BOT_KEYS, ...
ScheduleSettings = create_model(
    "ScheduleSettings",
    __base__=_ScheduleBase,
    **{setting_key(job.name): (str, job.default_schedule) for job in REGISTRY},
)


class SafetySettings(_Section):
    max_deletions: int = Field(500, ge=0)
    max_deletion_fraction: float = Field(0.5, gt=0, le=1)
    min_managed_for_fraction: int = Field(20, ge=0)


class MetricsSettings(_Section):
    port: int = Field(9102, ge=1, le=65535)
    bind_address: str = Field("0.0.0.0", pattern=r"^[0-9A-Fa-f.:]+$|^[A-Za-z0-9.-]+$")
    pushgateway_url: str | None = None
    pushgateway_username: str | None = Field(None, pattern=r"^[!-9;-~]+$")
    pushgateway_password_file: Path | None = None

    def pushgateway_password(self) -> str | None:
        if self.pushgateway_password_file is None:
            return None
        return read_secret_file(self.pushgateway_password_file, "ROTATOR_METRICS__PUSHGATEWAY_PASSWORD_FILE")

    @model_validator(mode="after")
    def _pushgateway_auth(self) -> "MetricsSettings":
        if bool(self.pushgateway_username) != bool(self.pushgateway_password_file):
            raise ValueError("set both ROTATOR_METRICS__PUSHGATEWAY_USERNAME and __PASSWORD_FILE, or neither")
        if self.pushgateway_password_file is not None and not self.pushgateway_password_file.is_file():
            raise ValueError(f"ROTATOR_METRICS__PUSHGATEWAY_PASSWORD_FILE: {self.pushgateway_password_file} is not a file")
        return self

    @field_validator("pushgateway_url")
    @classmethod
    def _pushgateway_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError when out of range or not a number
        except ValueError:
            raise ValueError("must be http(s)://host[:port] with a port in 1-65535") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
            raise ValueError("must be http(s)://host[:port] with a port in 1-65535")
        return _no_credentials(url)


class AwsSettings(_Section):
    concurrency: int = Field(8, ge=1, le=64)
    """Users (or runs) worked on at once."""
    max_requests_per_second: float = Field(20, gt=0, le=1000)
    """All AWS requests of the process (retries included), shared by every thread."""


class NotifySettings(_Section):
    slack_webhook_file: Path | None = None
    """A file holding a Slack incoming-webhook URL (gen3's ``slack-webhook`` secret): a failed or
    refused run posts one secret-free line there. Prometheus alerts stay the main channel."""

    def slack_webhook(self) -> str | None:
        if self.slack_webhook_file is None:
            return None
        return read_secret_file(self.slack_webhook_file, "ROTATOR_NOTIFY__SLACK_WEBHOOK_FILE")


class CapacitySettings(_Section):
    warn_fraction: float = Field(0.8, gt=0, le=1)


class LogSettings(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    """``auto``: console lines when stderr is a terminal, JSON lines otherwise."""
    level: Literal["debug", "info", "warning", "error"] = "info"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    hostname: str
    gen3workflow_config: Path | None = None
    dry_run: bool = True
    allowed_account_ids: list[AccountId] | None = None
    exclude_users: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(default_factory=list)
    """IAM user names or Gen3 user ids never touched (skipped and counted)."""
    user_keys: UserKeysSettings = UserKeysSettings()
    bot_keys: BotKeysSettings = BotKeysSettings()
    run_secrets: RunSecretsSettings = RunSecretsSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    safety: SafetySettings = SafetySettings()
    metrics: MetricsSettings = MetricsSettings()
    capacity: CapacitySettings = CapacitySettings()
    aws: AwsSettings = AwsSettings()
    notify: NotifySettings = NotifySettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Our variables first; values passed in (from the Gen3Workflow file) only fill gaps.
        return (env_settings, init_settings)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, hostname: str) -> str:
        if not _HOSTNAME.match(hostname):
            raise ValueError(f"{hostname!r} is not a hostname")
        return hostname  # as written: the service builds names and tags from it without case folding

    @property
    def owner_tag(self) -> str:
        return owner_tag_value(self.hostname)

    @property
    def bot_secret_prefix(self) -> str:
        return self.bot_keys.secret_prefix or f"gen3wf-rotator/{self.hostname}/bot-keys/"


def env_name(loc: tuple[Any, ...]) -> str:
    """The environment variable behind a pydantic error location."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + "__".join(parts).upper()


def _leaf_fields() -> dict[str, Any]:
    """Every setting's environment variable name and its field (sections walked, two levels deep)."""
    fields: dict[str, Any] = {}

    def walk(model: type[BaseModel], prefix: str, depth: int) -> None:
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            fields[env] = field
            annotation = field.annotation
            if depth < 2 and isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, env + "__", depth + 1)

    walk(Settings, ENV_PREFIX, 0)
    return fields


def _known_env_names() -> set[str]:
    return set(_leaf_fields())


def _is_json_field(field: Any) -> bool:
    """A list or mapping setting: its variable holds JSON."""
    annotation = field.annotation
    kinds = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    return any(typing.get_origin(k) in (list, dict, tuple, set) or k in (list, dict) for k in kinds)


def _read_gen3workflow_config(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Values from a Gen3Workflow config YAML, as init kwargs, and where each came from."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"ROTATOR_GEN3WORKFLOW_CONFIG: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"ROTATOR_GEN3WORKFLOW_CONFIG: {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        # Never PyYAML's snippet: the file holds DB_PASSWORD and ENCRYPTION_KEY.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"ROTATOR_GEN3WORKFLOW_CONFIG: {path} is not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"ROTATOR_GEN3WORKFLOW_CONFIG: {path} is not a YAML mapping")
    driver = raw.get("DB_DRIVER")
    if driver not in (None, "") and not str(driver).startswith("postgresql"):
        raise ConfigError(f"ROTATOR_GEN3WORKFLOW_CONFIG: DB_DRIVER in {path} is not PostgreSQL (gen3workflow-db needs postgresql)")
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, target in GEN3WORKFLOW_KEYS.items():
        value, origin = raw.get(key), f"{key} in {path}"
        if key in SERVICE_ENV_OVERRIDES and os.environ.get(key):
            value, origin = os.environ[key], f"{key} in the environment (overriding {path}, as the service does)"
        if value in (None, ""):
            continue
        node = values
        for part in target[:-1]:
            node = node.setdefault(part, {})
        node[target[-1]] = value
        origins[env_name(target)] = origin
    db = values.get("bot_keys", {}).get("db", {})
    if all(db.get(k) for k in ("host", "user", "password", "database", "encryption_key")):
        # The service keeps its bot keys in its own table: store them where it reads them.
        values["bot_keys"]["store"] = "gen3workflow-db"
        origins[env_name(("bot_keys", "store"))] = f"DB_* and ENCRYPTION_KEY in {path}"
    return values, origins


# Kubernetes gives every pod "Docker link" variables for each Service of its namespace
# (unless enableServiceLinks: false): a Service named rotator... yields ROTATOR_... names.
_SERVICE = r"[A-Z][A-Z0-9_]*[A-Z0-9]"
_IP = r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)"
_PORT = r"\d{1,5}"
_PROTO = r"(?:tcp|udp|sctp)"
_SERVICE_LINK_SHAPES = (
    (re.compile(rf"^{_SERVICE}_SERVICE_HOST$"), re.compile(rf"^{_IP}$")),
    (re.compile(rf"^{_SERVICE}_SERVICE_PORT(?:_[A-Z0-9_]+)?$"), re.compile(rf"^{_PORT}$")),
    (re.compile(rf"^{_SERVICE}_PORT(?:_{_PORT}_(?:TCP|UDP|SCTP))?$"), re.compile(rf"^{_PROTO}://\[?{_IP}\]?:{_PORT}$")),
    (re.compile(rf"^{_SERVICE}_PORT_{_PORT}_(?:TCP|UDP|SCTP)_PROTO$"), re.compile(rf"^{_PROTO}$")),
    (re.compile(rf"^{_SERVICE}_PORT_{_PORT}_(?:TCP|UDP|SCTP)_PORT$"), re.compile(rf"^{_PORT}$")),
    (re.compile(rf"^{_SERVICE}_PORT_{_PORT}_(?:TCP|UDP|SCTP)_ADDR$"), re.compile(rf"^{_IP}$")),
)


def is_service_link(name: str, value: str) -> bool:
    """Whether ``name=value`` has the exact shape of a variable the kubelet injects for a Service."""
    return any(n.match(name) and v.match(value) for n, v in _SERVICE_LINK_SHAPES)


def service_link_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """``ROTATOR_*`` variables that are Kubernetes service links, not settings (ignored)."""
    environ = os.environ if environ is None else environ
    known = _known_env_names()
    return sorted(
        k for k, v in environ.items() if k.startswith(ENV_PREFIX) and k.upper() not in known and is_service_link(k, v)
    )


def load_settings() -> Settings:
    """Read and validate all settings from the environment, or raise ConfigError naming the bad variable."""
    return load_settings_with_sources()[0]


def load_settings_with_sources() -> tuple[Settings, dict[str, str]]:
    """The settings, and for each variable the Gen3Workflow config key it came from (if any)."""
    environ = os.environ
    known = _known_env_names()
    links = set(service_link_names(environ))
    unknown = sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known and k not in links)
    from_files = sorted(k for k in environ if k.upper() in _VALUE_ONLY_FROM_FILES)
    if from_files:
        raise ConfigError("; ".join(f"{k}: set {k}{_VALUE_ONLY_FROM_FILES[k.upper()]} (a mounted file) instead" for k in from_files))
    if unknown:
        raise ConfigError(f"unknown setting {', '.join(unknown)} (see the README's settings table)")

    init: dict[str, Any] = {}
    origins: dict[str, str] = {}
    config_path = environ.get(ENV_PREFIX + "GEN3WORKFLOW_CONFIG")
    if config_path:
        init, origins = _read_gen3workflow_config(Path(config_path))
    try:
        return Settings(**init), origins
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins, environ)) from None
    except SettingsError:
        raise ConfigError(_describe_unparsable(environ)) from None


def effective_settings(settings: Settings, origins: Mapping[str, str], environ: Mapping[str, str] | None = None):
    """(variable, value, source) for every setting: secrets masked; source env, the Gen3Workflow config, or default."""
    environ = os.environ if environ is None else environ
    present = {k.upper() for k in environ}
    rows: list[tuple[str, str, str]] = []

    def walk(model: BaseModel, path: tuple[str, ...]) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            here = (*path, name)
            if isinstance(value, BaseModel):
                walk(value, here)
                continue
            variable = env_name(here)
            if variable in present or any(variable.startswith(env_name(here[:i]) + "__") and env_name(here[:i]) in present
                                           for i in range(1, len(here))):
                source = "environment"
            elif variable in origins:
                source = origins[variable]
            else:
                source = "default"
            rows.append((variable, _show(value), source))

    walk(settings, ())
    return rows


def _show(value: object) -> str:
    if isinstance(value, SecretStr):
        return "******** (set)" if value.get_secret_value() else ""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe_unparsable(environ: Mapping[str, str]) -> str:
    """pydantic-settings could not parse a value as JSON: name the variables that are not JSON."""
    json_fields = {name for name, field in _leaf_fields().items() if _is_json_field(field)}
    bad = []
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if upper not in json_fields:
            continue
        try:
            json.loads(value)
        except ValueError:
            bad.append(f"{name}: not valid JSON; {_expected(upper, 'list_type')}")
    if not bad:
        return "invalid configuration: a ROTATOR_* value that must be JSON could not be parsed"
    return "invalid configuration: " + "; ".join(bad)


_GENERIC_EXPECTED = {
    "list_type": "expected a JSON list, e.g. '[\"first\", \"second\"]'",
    "int_parsing": "expected a whole number",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false",
}


def _expected(name: str, error_type: str) -> str:
    """Words for one error of one variable: its own, else the usual ones for that kind of error, else ''."""
    return _EXPECTED.get(name, {}).get(error_type) or _GENERIC_EXPECTED.get(error_type, "")


# Clearer words than pydantic's for the settings people get wrong most.
_LIST_OF_IDS = "expected a JSON list of 12-digit strings, e.g. '[\"123456789012\"]'"
_EXPECTED: dict[str, dict[str, str]] = {
    "ROTATOR_ALLOWED_ACCOUNT_IDS": {"list_type": _LIST_OF_IDS, "string_pattern_mismatch": _LIST_OF_IDS, "string_type": _LIST_OF_IDS},
    "ROTATOR_RUN_SECRETS__SEQERA__URL": {"string_pattern_mismatch": "expected an http(s) URL, e.g. https://seqera.example.org/api"},
    "ROTATOR_RUN_SECRETS__TES__URL": {"string_pattern_mismatch": "expected an http(s) URL ending in /ga4gh/tes/v1"},
    "ROTATOR_EXCLUDE_USERS": {"list_type": "expected a JSON list of IAM user names or Gen3 user ids, e.g. '[\"42\"]'"},
    "ROTATOR_RUN_SECRETS__REGIONS": {"list_type": "expected a JSON list of AWS regions, e.g. '[\"us-east-1\"]'"},
    "ROTATOR_RUN_SECRETS__SEQERA__WORKSPACE_IDS": {
        "list_type": "expected a JSON list of Seqera workspace ids (digits), e.g. '[\"42\"]'"
    },
    "ROTATOR_RUN_SECRETS__PATTERNS": {
        "list_type": "expected a JSON list of regular expressions with a (?P<run_id>...) group,"
        " e.g. '[\"^tower-(?P<run_id>[A-Za-z0-9]{1,16})/\"]'"
    },
}


def _describe(exc: ValidationError, origins: Mapping[str, str], environ: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        name = env_name(error["loc"])
        if error["type"] == "missing" and name == ENV_PREFIX + "HOSTNAME":
            lines.append(f"{name}: required (or HOSTNAME in the file named by ROTATOR_GEN3WORKFLOW_CONFIG)")
            continue
        message = error["msg"].removeprefix("Value error, ")
        message = _expected(name, error["type"]) or message
        origin = "" if name in environ else (f" (from {origins[name]})" if name in origins else "")
        # Never echo the input: it may be a token.
        lines.append(f"{name}{origin}: {message}")
    return "invalid configuration: " + "; ".join(lines)


def with_store(settings: Settings, store: str) -> Settings:
    """The same settings with another bot-key store, validated (ConfigError if that store lacks settings)."""
    try:
        bot_keys = BotKeysSettings.model_validate({**settings.bot_keys.model_dump(), "store": store})
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"ROTATOR_BOT_KEYS__STORE={store}: {problems}") from None
    return settings.model_copy(update={"bot_keys": bot_keys})
