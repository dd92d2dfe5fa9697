"""Checks that run before any change: the right AWS account, and plans of sane size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rotator.errors import AccountNotAllowed
from rotator.model import Action
from rotator.settings import SafetySettings


def check_account(account_id: str, allowed: Sequence[str] | None) -> None:
    if allowed is not None and account_id not in allowed:
        raise AccountNotAllowed(
            f"AWS account {account_id} is not in ROTATOR_ALLOWED_ACCOUNT_IDS ({', '.join(allowed)}): refusing to act"
        )


@dataclass(frozen=True)
class Brake:
    limit: str
    message: str


def check_brakes(job: str, actions: Sequence[Action], *, managed: int, settings: SafetySettings) -> Brake | None:
    """Refuse a plan that deletes too much, as a whole, before anything is touched.

    ``managed`` is how many keys (or secrets) the job manages.
    """
    deletions = sum(1 for a in actions if a.is_deletion)
    if deletions > settings.max_deletions:
        return Brake(
            limit="max_deletions",
            message=(
                f"{job}: plan deletes {deletions}, more than ROTATOR_SAFETY__MAX_DELETIONS={settings.max_deletions};"
                " review the plan, then raise ROTATOR_SAFETY__MAX_DELETIONS to let it through"
            ),
        )
    if managed >= settings.min_managed_for_fraction and managed > 0:
        fraction = deletions / managed
        if fraction > settings.max_deletion_fraction:
            return Brake(
                limit="max_deletion_fraction",
                message=(
                    f"{job}: plan deletes {deletions} of {managed} managed ({fraction:.0%}), more than"
                    f" ROTATOR_SAFETY__MAX_DELETION_FRACTION={settings.max_deletion_fraction:g};"
                    " review the plan, then raise ROTATOR_SAFETY__MAX_DELETION_FRACTION (at most 1) to let it through"
                ),
            )
    return None
