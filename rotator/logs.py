"""structlog set-up: one JSON object per line on stderr, or a readable line per event on a terminal.

Whichever the format, secrets are redacted before an event is rendered.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, TextIO

import structlog

from rotator.concurrency import Progress

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


class _Sink:
    """Where log lines go: ``stream``, or whatever ``sys.stderr`` is when a line is written (it may
    be swapped after set-up). A progress line drawn on the terminal is cleared out of the way first."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def write(self, text: str) -> int:
        Progress.write_above(self.stream, text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def default_format(stream: TextIO | None = None) -> str:
    """``console`` when the log stream (stderr by default) is a terminal, ``json`` otherwise."""
    return "console" if is_terminal(sys.stderr if stream is None else stream) else "json"


RUN_CONTEXT = ("run_id", "hostname", "account")
"""Bound to every event of a run, to join JSON lines in a log store; on a terminal, the same on every line."""


def _for_people(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Console lines leave out the run's context and empty fields (``error=None``): they say nothing there."""
    return {k: v for k, v in event.items() if k not in RUN_CONTEXT and v is not None}


# Their DEBUG output carries request and response bodies: CreateAccessKey's and GetSecretValue's secrets.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def configure(*, format: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """``format``: ``json`` (one object per line) or ``console`` (``time [level] event key=value``,
    coloured only on a terminal and without ``NO_COLOR``); ``level``: the least level shown."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Plain-text warnings on every failed connection attempt; our own event carries the reason.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    sink = _Sink(stream)
    if format == "json":
        stamp, render = structlog.processors.TimeStamper(fmt="iso", utc=True), [structlog.processors.JSONRenderer()]
    else:
        colors = is_terminal(sink.stream) and "NO_COLOR" not in os.environ
        stamp = structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=True)
        render = [_for_people, structlog.dev.ConsoleRenderer(colors=colors, pad_event_to=24)]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            # Tracebacks become text here, before redaction: a secret in one is masked like any other.
            structlog.processors.format_exc_info,
            _redact_secrets,
            *render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (message and newline together), so a progress line can step aside for it.
        logger_factory=structlog.WriteLoggerFactory(file=sink),
        cache_logger_on_first_use=False,
    )
