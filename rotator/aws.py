"""AWS clients: one boto3 session, clients built once, bounded adaptive retries.

Endpoint, region and credentials come from the standard AWS environment only.
"""

from __future__ import annotations

import os
import threading
import traceback
from typing import Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from rotator import __version__

MAX_ATTEMPTS = 6

log = structlog.get_logger("rotator.aws")

CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra=f"gen3wf-rotator/{__version__}",
)

SINGLE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})

PERMISSIONS = ("sts:GetCallerIdentity",)
GLOBAL_SERVICES = ("iam", "sts")


class Aws:
    """Lazily built, cached clients sharing one session."""

    def __init__(self, session: boto3.session.Session | None = None) -> None:
        # botocore reads only AWS_DEFAULT_REGION; EKS (IRSA) and the other SDKs set AWS_REGION.
        self.session = session or boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
        self._clients: dict[str, Any] = {}
        self._hooks: list[tuple[str, Any, str]] = []
        # boto3 clients are thread-safe, sessions are not: serve's jobs may build clients at once.
        self._lock = threading.Lock()
        self.rate_limiter = None
        # -v: one debug event per AWS call (operation and answer, never a parameter or a value).
        self.on("after-call", _log_call, unique_id="rotator-debug-call")
        self.on("after-call-error", _log_call_error, unique_id="rotator-debug-call-error")

    def on(self, event: str, handler: Any, *, unique_id: str) -> None:
        """Register a botocore event handler on every client, present and future."""
        with self._lock:
            # The same unique_id again replaces the handler (a new Metrics for the same clients).
            for old_event, _old, uid in [h for h in self._hooks if h[2] == unique_id]:
                for client in self._clients.values():
                    client.meta.events.unregister(old_event, unique_id=uid)
            self._hooks = [h for h in self._hooks if h[2] != unique_id]
            self._hooks.append((event, handler, unique_id))
            for client in self._clients.values():
                client.meta.events.register_first(event, handler, unique_id=unique_id)

    def limit_rate(self, requests_per_second: float) -> None:
        """One token bucket in front of every HTTP attempt of every client of this process."""
        from rotator.concurrency import RateLimiter

        if self.rate_limiter is None:
            self.rate_limiter = RateLimiter(requests_per_second)
            self.on("before-send", self.rate_limiter.before_send, unique_id="rotator-rate-limit")
        else:
            self.rate_limiter.configure(requests_per_second)

    def off(self, unique_id: str) -> None:
        """Unregister a handler registered with :meth:`on` from every client."""
        with self._lock:
            for event, _handler, uid in [h for h in self._hooks if h[2] == unique_id]:
                for client in self._clients.values():
                    client.meta.events.unregister(event, unique_id=uid)
            self._hooks = [h for h in self._hooks if h[2] != unique_id]

    def client(self, service: str, *, retries: bool = True, region: str | None = None) -> Any:
        """The shared client of ``service`` (in ``region``, default the session's); ``retries=False``:
        one attempt per call, for calls that are not idempotent (CreateAccessKey), whose caller
        decides what to do after a failure."""
        with self._lock:
            return self._client(service, retries=retries, region=region)

    def _client(self, service: str, *, retries: bool, region: str | None = None) -> Any:
        key = service if retries else f"{service}/single-attempt"
        if region and region != self.session.region_name:
            key += f"@{region}"
        if key not in self._clients:
            region = region or self.session.region_name
            if service in GLOBAL_SERVICES and region is None:
                region = "us-east-1"  # global services; botocore still wants a region to sign with
            config = CLIENT_CONFIG if retries else CLIENT_CONFIG.merge(SINGLE_ATTEMPT)
            client = self.session.client(service, region_name=region, config=config)
            for event, handler, unique_id in self._hooks:
                client.meta.events.register_first(event, handler, unique_id=unique_id)
            self._clients[key] = client
        return self._clients[key]

    def client_with_key(self, service: str, *, access_key_id: str, secret_access_key: str) -> Any:
        """A single-attempt client signing with the given key (to prove a new key works), hooks included."""
        region = self.session.region_name or "us-east-1"
        with self._lock:  # the session is not thread-safe: bot users are verified in parallel
            client = self.session.client(
                service,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                aws_session_token=None,
                config=CLIENT_CONFIG.merge(SINGLE_ATTEMPT),
            )
            for event, handler, unique_id in self._hooks:
                client.meta.events.register_first(event, handler, unique_id=unique_id)
        return client

    @property
    def region(self) -> str | None:
        return self.session.region_name

    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]


def is_ambiguous(exc: BaseException) -> bool:
    """Whether AWS may have applied the request although it failed (no answer, or a 5xx)."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or error_code(exc) in SERVER_ERROR_CODES
    return isinstance(exc, BotoCoreError) and not isinstance(exc, NoCredentialsError | EndpointConnectionError)


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLE_CODES


SERVER_ERROR_CODES = frozenset(
    {"ServiceFailure", "InternalFailure", "InternalServiceError", "InternalServiceErrorException", "ServiceUnavailable"}
)
THROTTLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
     "RequestThrottled", "RequestThrottledException", "SlowDown"}
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "ClientError")
    return type(exc).__name__


class SafeError(Exception):
    """An error whose message we wrote and which carries no value read from AWS or an API."""


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of an error.

    AWS errors give operation, code and AWS's message; botocore's own errors and ours
    (:class:`SafeError`) their text. Anything else (a TypeError on a malformed value…)
    gives only its type and where it happened: its message could hold the value.
    """
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "?")
        return f"{operation}: {err.get('Code', 'ClientError')}: {err.get('Message', '')}".strip()
    if isinstance(exc, BotoCoreError | SafeError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} in {_where(exc)}"


def _where(exc: BaseException) -> str:
    """``module.function:line`` of the innermost frame of this package in the traceback."""
    where = "?"
    for frame, line in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module.startswith("rotator"):
            where = f"{module}.{frame.f_code.co_name}:{line}"
    return where


def _log_call(*, model=None, parsed=None, http_response=None, **_: Any) -> None:
    if model is None:
        return
    code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
    log.debug("aws.call", service=model.service_model.service_name, operation=model.name,
              status=getattr(http_response, "status_code", None), error_code=code)


def event_operation(event_name: str) -> tuple[str, str]:
    """(service id, operation) of a botocore event name such as ``after-call-error.secrets-manager.GetSecretValue``:
    the events without a model carry only that."""
    _, _, rest = event_name.partition(".")
    service, _, operation = rest.partition(".")
    return service, operation


def _log_call_error(*, event_name: str = "", exception: BaseException | None = None, **_: Any) -> None:
    service, operation = event_operation(event_name)
    log.debug("aws.call_failed", service=service, operation=operation, error=describe_error(exception) if exception else None)
