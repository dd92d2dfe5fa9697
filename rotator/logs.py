"""structlog set-up: one JSON object per line on stderr (or console format on request)."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_FIELD = re.compile(r"secret_access_key|secret_value|secretstring|token|password", re.IGNORECASE)


def _redact_secret_fields(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    # Defence in depth: no code path logs these, and if one ever does, it logs this instead.
    for key in event:
        if _SECRET_FIELD.search(key):
            event[key] = "[redacted]"
    return event


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written (it may be swapped after set-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(*, format: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    renderer = structlog.processors.JSONRenderer() if format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secret_fields,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or _CurrentStderr()),
        cache_logger_on_first_use=False,
    )
