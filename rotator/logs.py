"""structlog set-up: one JSON object per line on stderr (or console format on request)."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_WORDS = ("secretaccesskey", "secretvalue", "secretstring", "secretbinary", "keysecret", "encryptionkey",
                 "token", "password", "authorization")
REDACTED = "[redacted]"

_seen_secrets: set[str] = set()
_seen_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """A secret this process holds (a new key's secret, a token…): masked wherever it would be logged."""
    if isinstance(value, str) and len(value) >= 8:
        with _seen_lock:
            _seen_secrets.add(value)


def _is_secret_field(key: object) -> bool:
    normalised = str(key).lower().replace("_", "").replace("-", "")
    return any(word in normalised for word in _SECRET_WORDS)


def _scrub(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _is_secret_field(k) else _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, secrets) for v in value)
    return value


def _redact_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    # Defence in depth: no code path logs a secret, and if one ever does, it logs this instead.
    with _seen_lock:
        secrets = frozenset(_seen_secrets)
    return _scrub(event, secrets)


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (it may be swapped after set-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# Their DEBUG output carries request and response bodies: CreateAccessKey's and GetSecretValue's secrets.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def configure(*, format: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Plain-text warnings on every failed connection attempt; our own event carries the reason.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    renderer = structlog.processors.JSONRenderer() if format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or _CurrentStderr()),
        cache_logger_on_first_use=False,
    )
