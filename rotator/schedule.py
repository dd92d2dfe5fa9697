"""Crontab expressions (UTC) to APScheduler 3 triggers.

APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (7 too), so
numeric weekdays are translated to names rather than passed through.
"""

from __future__ import annotations

import re
from datetime import UTC

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day_of_week(field: str) -> str:
    parts = []
    for part in field.split(","):
        match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part)
        if not match:
            parts.append(part)  # names, e.g. mon-fri: APScheduler reads them as crontab does
            continue
        span, step = match.group(1), int(match.group(2) or 1)
        if step < 1:
            raise ValueError(f"invalid step in day of week {part!r}")
        low, high = (0, 6) if span == "*" else (int(span.split("-")[0]), int(span.split("-")[-1]))
        if not (0 <= low <= 7 and 0 <= high <= 7 and low <= high):
            raise ValueError(f"day of week {part!r} out of range 0-7")
        parts.extend(_DAYS[day % 7] for day in range(low, high + 1, step))
    return ",".join(dict.fromkeys(parts))


def cron_trigger(expression: str, *, jitter_seconds: int = 0) -> CronTrigger:
    """A UTC trigger for a five-field crontab expression, or ValueError."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r} is not a crontab expression (five fields: minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_day_of_week(weekday),
        timezone=UTC,
        jitter=jitter_seconds or None,
    )
