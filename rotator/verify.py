"""Prove a new access key works before anyone can be handed it.

IAM is eventually consistent: a key CreateAccessKey just returned can be refused for a few
seconds. ``sts:GetCallerIdentity`` signed with the new key must answer with the bot user's
own ARN, retried with backoff up to a deadline; only then does the store make it the key
readers take (AWS's own rotation protocol: create, set, **test**, finish).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from rotator.aws import Aws, error_code
from rotator.model import NewKey

log = structlog.get_logger("rotator.verify")

# GetCallerIdentity needs no permission: any valid key may call it.
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0


@dataclass(frozen=True)
class Verification:
    ok: bool
    seconds: float
    attempts: int
    reason: str | None = None
    """Why it failed: ``refused`` (the key was not accepted in time), ``wrong-identity``, ``error``."""


def verify_key(
    aws: Aws,
    key: NewKey,
    *,
    account_id: str | None,
    timeout_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> Verification:
    started = monotonic()
    if timeout_seconds <= 0:
        return Verification(ok=True, seconds=0.0, attempts=0)
    sts = aws.client_with_key("sts", access_key_id=key.key_id, secret_access_key=key.secret)
    delay, attempts, reason = FIRST_DELAY_SECONDS, 0, "refused"
    while True:
        attempts += 1
        try:
            arn = sts.get_caller_identity().get("Arn", "")
        except Exception as exc:  # noqa: BLE001 - a new key being refused is the expected case here
            reason = "refused" if error_code(exc) in ("InvalidClientTokenId", "SignatureDoesNotMatch", "AuthFailure") else "error"
        else:
            if _is_user(arn, key.user, account_id):
                return Verification(ok=True, seconds=monotonic() - started, attempts=attempts)
            return Verification(ok=False, seconds=monotonic() - started, attempts=attempts, reason="wrong-identity")
        elapsed = monotonic() - started
        if elapsed + delay > timeout_seconds:
            return Verification(ok=False, seconds=elapsed, attempts=attempts, reason=reason)
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY_SECONDS)


def _is_user(arn: str, user: str, account_id: str | None) -> bool:
    """``arn:aws:iam::<account>:user/[<path>/]<user>`` (any partition)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("user/"):
        return False
    return parts[5].rsplit("/", 1)[-1] == user and (account_id is None or parts[4] == account_id)
