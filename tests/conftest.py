from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from helpers import HOST, T0, TAG  # noqa: F401
from rotator import logs
from rotator.aws import Aws


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
def fault(aws) -> Iterator:
    """Make one AWS operation fail with an error code, at botocore's boundary."""
    registered = []

    def inject(service: str, operation: str, code: str, *, times: int | None = None) -> None:
        remaining = [times]

        def fail(**kwargs):
            if remaining[0] is not None:
                if remaining[0] <= 0:
                    return None
                remaining[0] -= 1
            raise ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)

        event = f"before-call.{service}.{operation}"
        uid = f"test-fault-{len(registered)}"
        for retries in (True, False):  # the shared client and its single-attempt twin
            aws.client(service, retries=retries).meta.events.register(event, fail, unique_id=uid)
        registered.append((service, event, uid))

    yield inject
    for service, event, uid in registered:
        for retries in (True, False):
            aws.client(service, retries=retries).meta.events.unregister(event, unique_id=uid)


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
