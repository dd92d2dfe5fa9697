"""AWS clients: one boto3 session, clients built once, bounded adaptive retries.

Endpoint, region and credentials come from the standard AWS environment only.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from rotator import __version__

MAX_ATTEMPTS = 6

CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
    connect_timeout=5,
    read_timeout=30,
    user_agent_extra=f"gen3wf-rotator/{__version__}",
)

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

    def on(self, event: str, handler: Any, *, unique_id: str) -> None:
        """Register a botocore event handler on every client, present and future."""
        with self._lock:
            self._hooks.append((event, handler, unique_id))
            for client in self._clients.values():
                client.meta.events.register_first(event, handler, unique_id=unique_id)

    def client(self, service: str) -> Any:
        with self._lock:
            return self._client(service)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            region = self.session.region_name
            if service in GLOBAL_SERVICES and region is None:
                region = "us-east-1"  # global services; botocore still wants a region to sign with
            client = self.session.client(service, region_name=region, config=CLIENT_CONFIG)
            for event, handler, unique_id in self._hooks:
                client.meta.events.register_first(event, handler, unique_id=unique_id)
            self._clients[service] = client
        return self._clients[service]

    @property
    def region(self) -> str | None:
        return self.session.region_name

    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "ClientError")
    return type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of an AWS or transport error."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "?")
        return f"{operation}: {err.get('Code', 'ClientError')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
