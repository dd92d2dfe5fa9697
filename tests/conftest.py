from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from helpers import HOST, T0, TAG  # noqa: F401
from rotator import logs
from rotator.aws import Aws
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.settings import load_settings


def _clean_environment() -> None:
    for name in list(os.environ):
        if name.startswith("ROTATOR_") or name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
    )


_clean_environment()  # before any client is built, so none reaches a real endpoint


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # AWS_ENDPOINT_URL would send boto3 past mock_aws to a real server.
    for name in list(os.environ):
        if name.startswith("ROTATOR_") or name == "AWS_ENDPOINT_URL":
            monkeypatch.delenv(name)
    # The polite production cap (20 requests/s) is for a real account; moto in-process needs none.
    monkeypatch.setenv("ROTATOR_AWS__MAX_REQUESTS_PER_SECOND", "1000")


@pytest.fixture(scope="session")
def _moto() -> Iterator[mock_aws]:
    with mock_aws() as mock:
        yield mock


@pytest.fixture(scope="session")
def _session_aws(_moto) -> Aws:
    # Clients are built once per session: a fresh boto3 client costs ~0.15 s.
    return Aws(boto3.session.Session(region_name="us-east-1"))


@pytest.fixture
def aws(_moto, _session_aws) -> Iterator[Aws]:
    _moto.reset()
    yield _session_aws


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):
    """The settings of a deployment on ``helpers.HOST``, nothing else set."""
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    return load_settings()


@pytest.fixture
def store(aws, settings) -> SecretsManagerStore:
    return SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix)


@pytest.fixture
def hooks(aws) -> Iterator[Callable[[str, str, Callable], None]]:
    """Register a botocore handler for one event on a service's shared client and its
    single-attempt twin (``register(service, event, handler)``); all removed at teardown."""
    registered: list[tuple[str, str, str]] = []

    def register(service: str, event: str, handler: Callable) -> None:
        uid = f"test-hook-{len(registered)}"
        for retries in (True, False):
            aws.client(service, retries=retries).meta.events.register(event, handler, unique_id=uid)
        registered.append((service, event, uid))

    yield register
    for service, event, uid in registered:
        for retries in (True, False):
            aws.client(service, retries=retries).meta.events.unregister(event, unique_id=uid)


@pytest.fixture
def fault(hooks) -> Callable:
    """Make one AWS operation fail with an error code, at botocore's boundary (before AWS sees it)."""

    def inject(service: str, operation: str, code: str, *, times: int | None = None) -> None:
        remaining = [times]

        def fail(**kwargs):
            if remaining[0] is not None:
                if remaining[0] <= 0:
                    return None
                remaining[0] -= 1
            raise ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)

        hooks(service, f"before-call.{service}.{operation}", fail)

    return inject


@pytest.fixture
def after(hooks) -> Callable:
    """Run ``hook(**kwargs)`` after an operation was applied by AWS, before its answer reaches us."""

    def install(service: str, operation: str, hook: Callable, *, times: int = 1) -> None:
        left = [times]

        def handler(**kwargs):
            if left[0] > 0:
                left[0] -= 1
                hook(**kwargs)

        hooks(service, f"after-call.{service}.{operation}", handler)

    return install


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    logs.configure(format="json", level="debug", stream=buffer)
    yield buffer
    logs.configure()


def require_binary(name: str) -> str:
    """Path of an external program; skip without it on a laptop, fail in CI."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("REQUIRE_TEST_BINARIES") or os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI but is not installed")
    pytest.skip(f"{name} not installed")
