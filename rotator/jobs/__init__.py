"""The job registry: one module per job, and everything that lists jobs derives from here.

The CLI's ``--job`` choices, the ``ROTATOR_SCHEDULE__<JOB>`` settings, the metrics' job
labels and the IAM-policy test all read :data:`REGISTRY`. Adding a job is one module
defining a :class:`~rotator.jobs.base.Job` plus its entry below.
"""

from __future__ import annotations

from rotator.jobs import bot_keys, run_secrets, user_keys
from rotator.jobs.base import Job

REGISTRY: tuple[Job, ...] = (user_keys.JOB, bot_keys.JOB, run_secrets.JOB)
JOB_NAMES: tuple[str, ...] = tuple(job.name for job in REGISTRY)


def get_job(name: str) -> Job:
    for job in REGISTRY:
        if job.name == name:
            return job
    raise KeyError(f"unknown job {name!r} (one of {', '.join(JOB_NAMES)})")


def setting_key(job_name: str) -> str:
    """``user-keys`` -> ``user_keys``: the job's name in settings (``ROTATOR_SCHEDULE__USER_KEYS``)."""
    return job_name.replace("-", "_")
