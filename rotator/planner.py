"""The planning rules the jobs share: pure functions of observed state and an explicit ``now``.

No clock reads and no AWS calls here, nor in any job's ``plan``. "Expired" means exactly
what Gen3Workflow shows its users as expired: inactive, or more whole days since
creation than the lifetime. Each job's own rule lives in its module under ``rotator/jobs/``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rotator.model import DELETE_KEY, AccessKey, Action, ManagedUser, ReportedKey


def age_days(created: datetime, now: datetime) -> int:
    """Whole days since ``created``, as the service counts them (``timedelta.days``)."""
    return (now - created).days


def expiry_reason(key: AccessKey | ReportedKey, *, now: datetime, lifetime_days: int, inactive_expires: bool = True) -> str | None:
    """Why the service would show this key as expired, or None if it would not."""
    if inactive_expires and not key.active:
        return "inactive"
    days = age_days(key.created, now)
    if days > lifetime_days:
        return f"expired: {days}d > {lifetime_days}d"
    return None


def fmt_age(age: timedelta) -> str:
    """``16d``, ``5h`` or ``12m``: the largest whole unit."""
    if age >= timedelta(days=1):
        return f"{age.days}d"
    if age >= timedelta(hours=1):
        return f"{int(age.total_seconds() // 3600)}h"
    return f"{int(age.total_seconds() // 60)}m"


def key_target(user: ManagedUser, key_id: str) -> str:
    return f"{user.name}/{key_id}"


def delete_key(job: str, user: ManagedUser, key: AccessKey, reason: str, *, now: datetime) -> Action:
    # Every deletion reason starts with its stable code: "expired: 34d > 30d", "inactive", "orphan: …", "rotation: …".
    code = reason.split(":", 1)[0]
    return Action(
        job=job, kind=DELETE_KEY, target=key_target(user, key.key_id), reason=reason, user=user.name, key_id=key.key_id,
        reason_code=code, age_days=age_days(key.created, now),
    )
