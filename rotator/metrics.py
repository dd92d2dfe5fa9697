"""Every Prometheus metric rotator exports, on a registry the caller owns.

Values tell the truth: an action counts under the outcome it really had, and key gauges
describe the account as the run left it (a failed deletion leaves an expired key counted).
No label ever carries a secret, a user name or a key id (cardinality stays bounded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit, urlunsplit

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import Metric

from rotator import __version__
from rotator.aws import THROTTLE_CODES, Aws, event_operation
from rotator.jobs import get_job
from rotator.logs import remember_secret
from rotator.runner import ERROR, JOB_OUTCOMES, SUCCESS, JobResult, RunResult
from rotator.settings import Settings

log = structlog.get_logger("rotator.metrics")

disable_created_metrics()  # *_created series only double what the dashboards need



class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.job_runs = Counter("rotator_job_runs_total", "Job runs by outcome (success, failed, refused, error).", ["job", "outcome"], registry=r)
        self.last_outcome = Gauge(
            "rotator_job_last_outcome", "1 for the outcome of the job's last run, 0 for the others.", ["job", "outcome"], registry=r
        )
        self.last_run = Gauge("rotator_job_last_run_timestamp_seconds", "Unix time the job last ran.", ["job"], registry=r)
        self.job_duration = Gauge("rotator_job_duration_seconds", "Duration of the job's last run.", ["job"], registry=r)
        self.last_success = Gauge(
            "rotator_job_last_success_timestamp_seconds", "Unix time of the job's last successful run.", ["job"], registry=r
        )
        self.actions = Counter(
            "rotator_actions_total", "Actions by kind and outcome (done, failed, skipped, dry-run).", ["job", "action", "outcome"], registry=r
        )
        self.managed_users = Gauge("rotator_managed_users", "IAM users managed, by kind (user, bot).", ["kind"], registry=r)
        self.access_keys = Gauge(
            "rotator_access_keys", "Access keys of managed users after the last run, by kind and state (live, expired, inactive).",
            ["kind", "state"], registry=r,
        )
        self.keys_expiring = Gauge(
            "rotator_access_keys_expiring", "Live keys that expire within the given number of days.", ["kind", "within_days"], registry=r
        )
        self.oldest_key_age = Gauge(
            "rotator_access_key_oldest_age_seconds", "Age of the oldest live key, by kind.", ["kind"], registry=r
        )
        self.key_lifetime = Gauge(
            "rotator_access_key_lifetime_seconds", "Configured key lifetime (a key expires once its whole-day age exceeds it).",
            ["kind"], registry=r,
        )
        self.bot_users_unhealthy = Gauge(
            "rotator_bot_users_unhealthy", "Bot users left without two live, stored keys by the last bot-keys run.", registry=r
        )
        self.run_secrets = Gauge("rotator_run_secrets", "Run secrets seen by the last run-secrets run, by state.", ["state"], registry=r)
        self.skipped_names = Gauge(
            "rotator_skipped_names", "Tagged users or prefixed secrets skipped because their name does not parse.", ["job"], registry=r
        )
        self.status_errors = Counter(
            "rotator_run_status_errors_total", "Run-status lookups that failed (the run's secrets were kept).", ["source"], registry=r
        )
        self.aws_calls = Counter(
            "rotator_aws_api_calls_total", "AWS API calls by final outcome (success, throttled, error).",
            ["service", "operation", "outcome"], registry=r,
        )
        self.aws_throttles = Counter(
            "rotator_aws_api_throttles_total", "AWS API attempts answered with a throttling error (retried or not).",
            ["service", "operation"], registry=r,
        )
        self.brake_trips = Counter("rotator_safety_brake_trips_total", "Plans refused by a safety brake.", ["job"], registry=r)
        self.iam_users = Gauge("rotator_iam_users", "IAM users in the account (all of them, ours or not).", registry=r)
        self.iam_users_quota = Gauge("rotator_iam_users_quota", "The account's IAM user quota (GetAccountSummary UsersQuota).", registry=r)
        self.key_verification_seconds = Histogram(
            "rotator_key_verification_seconds",
            "Time until a new bot key answered sts:GetCallerIdentity as its user (or verification gave up).",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=r,
        )
        self.key_verification_failures = Counter(
            "rotator_key_verification_failures_total",
            "New bot keys deleted because they never verified, by reason (refused, wrong-identity, error).",
            ["reason"],
            registry=r,
        )
        self.dry_run = Gauge(
            "rotator_dry_run", "1 while rotator runs in dry-run mode (it plans and changes nothing), else 0.", registry=r
        )
        self.build_info = Gauge("rotator_build_info", "Always 1; the version is a label.", ["version"], registry=r)
        self.build_info.labels(version=__version__).set(1)

    # --- AWS calls, from botocore's own events --------------------------------------

    def instrument(self, aws: Aws) -> None:
        aws.on("after-call", self._after_call, unique_id="rotator-metrics-after-call")
        aws.on("after-call-error", self._after_call_error, unique_id="rotator-metrics-after-call-error")
        aws.on("needs-retry", self._on_attempt, unique_id="rotator-metrics-needs-retry")

    # botocore calls these with keyword arguments that differ by event (after-call-error
    # has no model): each takes what it needs and accepts the rest. A metrics hook must
    # never raise into an AWS call.

    def _after_call(self, *, parsed: dict[str, Any] | None = None, model=None, **_: Any) -> None:
        if model is None:
            return
        code = (parsed or {}).get("Error", {}).get("Code")
        outcome = "success" if not code else ("throttled" if code in THROTTLE_CODES else "error")
        self.aws_calls.labels(model.service_model.service_name, model.name, outcome).inc()

    def _after_call_error(self, *, event_name: str = "", **_: Any) -> None:
        service_id, operation = event_operation(event_name)  # no model on this event
        self.aws_calls.labels(service_id.replace("-", "") or "unknown", operation or "unknown", "error").inc()

    def _on_attempt(self, *, response=None, operation=None, **_: Any) -> None:
        if response is None or operation is None:
            return None
        code = ((response[1] if isinstance(response, tuple) else None) or {}).get("Error", {}).get("Code")
        if code in THROTTLE_CODES:
            self.aws_throttles.labels(operation.service_model.service_name, operation.name).inc()
        return None  # never decide about retries: botocore's handler does

    # --- a run's results ------------------------------------------------------------

    def record_run(self, result: RunResult, *, settings: Settings) -> None:
        self.dry_run.set(1 if result.dry_run else 0)
        if result.user_quota is not None:
            self.iam_users.set(result.user_quota.users)
            self.iam_users_quota.set(result.user_quota.quota)
        for job in result.jobs:
            self.record_job(job, now=result.now, settings=settings)

    def record_job(self, job: JobResult, *, now: datetime, settings: Settings) -> None:
        self.job_runs.labels(job.job, job.outcome).inc()
        for outcome in JOB_OUTCOMES:
            self.last_outcome.labels(job.job, outcome).set(1 if outcome == job.outcome else 0)
        self.last_run.labels(job.job).set(now.timestamp())
        self.job_duration.labels(job.job).set(job.duration_seconds)
        if job.outcome == SUCCESS:
            self.last_success.labels(job.job).set(now.timestamp())
        if job.brake:
            self.brake_trips.labels(job.job).inc()
        for outcome in job.outcomes:
            self.actions.labels(job.job, outcome.action.kind, outcome.result).inc()
        if job.plan is None or job.error:
            return  # nothing (or not all) was observed or done: keep the last known state
        self.skipped_names.labels(job.job).set(len(job.plan.skipped))
        get_job(job.job).record_metrics(self, job, now=now, settings=settings)

    def record_error(self, job: str, *, now: datetime) -> None:
        """A run that ended before it had a result (configuration, crash)."""
        self.job_runs.labels(job, ERROR).inc()
        for outcome in JOB_OUTCOMES:
            self.last_outcome.labels(job, outcome).set(1 if outcome == ERROR else 0)
        self.last_run.labels(job).set(now.timestamp())


# --- one-shot runs: push to a Pushgateway --------------------------------------------

SHARED_GROUP = "rotator"


class _Slice:
    """A view of a registry with only the samples a predicate keeps (a collector for pushing)."""

    def __init__(self, registry: CollectorRegistry, keep: Callable[[dict[str, str]], bool]) -> None:
        self._registry = registry
        self._keep = keep

    def collect(self):
        for family in self._registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if self._keep(s.labels)]
            if kept.samples:
                yield kept


def push(
    metrics: Metrics,
    *,
    url: str,
    hostname: str,
    jobs: Sequence[str],
    timeout: float = 10,
    username: str | None = None,
    password: str | None = None,
) -> bool:
    """Push a run's metrics, grouped by job and hostname. Logs and returns False on failure.

    The Pushgateway's grouping label ``job`` would overwrite our own ``job`` label, so each
    rotator job gets its own group holding its series, and series without a job label
    (AWS calls, build info, bot health) go to the group ``job="rotator"``: every series
    lands exactly once. Basic auth comes from ``username``/``password`` or from the URL's
    userinfo; the URL is logged without it.
    """
    target, url_user, url_password = split_userinfo(url)
    username, password = username or url_user, password if username else url_password
    remember_secret(password)
    handler = default_handler
    if username is not None:

        def handler(url, method, timeout, headers, data):  # noqa: F811 - prometheus_client's handler signature
            return basic_auth_handler(url, method, timeout, headers, data, username, password or "")

    groups = {job: _Slice(metrics.registry, lambda labels, job=job: labels.get("job") == job) for job in jobs}
    groups[SHARED_GROUP] = _Slice(metrics.registry, lambda labels: "job" not in labels)
    ok = True
    for group, collector in groups.items():
        try:
            push_to_gateway(target, job=group, grouping_key={"hostname": hostname}, registry=collector, timeout=timeout, handler=handler)
        except Exception as exc:  # noqa: BLE001 - a failed push never changes the run's outcome
            log.error("metrics.push_failed", url=safe_url(target), group=group, error=_push_error(exc))
            ok = False
    if ok:
        log.info("metrics.pushed", url=safe_url(target), groups=sorted(groups))
    return ok


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without ``user:password@``, user, password)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.username or ""), unquote(parts.password or "")


def safe_url(url: str) -> str:
    return split_userinfo(url)[0]


def _push_error(exc: Exception) -> str:
    # urllib's errors can quote the request URL; ours never carries userinfo, but keep it short and typed.
    if isinstance(exc, HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, URLError):
        return f"URLError: {type(exc.reason).__name__}"
    return f"{type(exc).__name__}"
