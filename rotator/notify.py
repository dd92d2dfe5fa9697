"""A failure notice in Gen3's habit: ``JOBFAIL: <job> failed for <hostname>`` to a Slack webhook.

One line per failed or brake-refused job of a run, naming the job, the hostname and the run id
(to find the run's audit trail in the logs); never a user, key or secret. Best effort: a
notice that cannot be sent is logged and changes nothing else.
"""

from __future__ import annotations

import json

import structlog
import urllib3

from rotator.runner import SUCCESS, RunResult

log = structlog.get_logger("rotator.notify")

TIMEOUT_SECONDS = 5


def failure_text(result: RunResult) -> str | None:
    failed = [j for j in result.jobs if j.outcome != SUCCESS]
    if not failed:
        return None
    lines = [
        f"JOBFAIL: rotator {j.job} {'refused by a safety brake' if j.outcome == 'refused' else j.outcome}"
        f" for {result.hostname} (run {result.run_id}{', dry-run' if result.dry_run else ''})"
        for j in failed
    ]
    return "\n".join(lines)


def notify_failure(result: RunResult, *, webhook: str | None) -> bool:
    """Post the failure notice if the run had a failed or refused job; False when sending failed."""
    text = failure_text(result)
    if not webhook or text is None:
        return True
    try:
        response = urllib3.PoolManager(retries=urllib3.Retry(total=1, backoff_factor=0.5)).request(
            "POST", webhook, body=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"},
            timeout=urllib3.Timeout(total=TIMEOUT_SECONDS),
        )
    except urllib3.exceptions.HTTPError as exc:
        log.error("notify.failed", channel="slack", error=type(exc).__name__)
        return False
    if response.status >= 300:
        log.error("notify.failed", channel="slack", error=f"HTTP {response.status}")
        return False
    log.info("notify.sent", channel="slack", jobs=[j.job for j in result.jobs if j.outcome != SUCCESS])
    return True
