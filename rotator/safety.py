"""Checks that run before any change: the right AWS account, and plans of sane size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rotator.errors import AccountNotAllowed
from rotator.model import Action
from rotator.settings import SafetySettings

ADOPT = "adopt"
"""Reason code of deleting a bot key that rotator did not create (first-run adoption, rotator.jobs.bot_keys):
the brakes explain it, since a first run on an existing deployment replaces every such key."""


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

    ``managed`` is how many keys (or secrets) the job manages. When the deletions are bot keys
    rotator is adopting (``reason_code`` ``adopt``), the message says what that is and how to proceed.
    """
    deletions = sum(1 for a in actions if a.is_deletion)
    adoptions = sum(1 for a in actions if a.is_deletion and a.reason_code == ADOPT)
    fraction = deletions / managed if managed > 0 else 0.0
    over_count = deletions > settings.max_deletions
    over_fraction = managed >= settings.min_managed_for_fraction and managed > 0 and fraction > settings.max_deletion_fraction
    # What one adoption run needs to be let through: every limit this plan passes.
    let_through = ([f"ROTATOR_SAFETY__MAX_DELETIONS={deletions}"] if over_count else []) + (
        ["ROTATOR_SAFETY__MAX_DELETION_FRACTION=1"] if over_fraction else []
    )
    if over_count:
        return Brake(
            limit="max_deletions",
            message=(
                f"{job}: plan deletes {deletions}, more than ROTATOR_SAFETY__MAX_DELETIONS={settings.max_deletions};"
                " review the plan, then raise ROTATOR_SAFETY__MAX_DELETIONS to let it through"
            )
            + adoption_advice(adoptions, deletions, let_through),
        )
    if over_fraction:
        return Brake(
            limit="max_deletion_fraction",
            message=(
                f"{job}: plan deletes {deletions} of {managed} managed ({fraction:.0%}), more than"
                f" ROTATOR_SAFETY__MAX_DELETION_FRACTION={settings.max_deletion_fraction:g};"
                " review the plan, then raise ROTATOR_SAFETY__MAX_DELETION_FRACTION (at most 1) to let it through"
            )
            + adoption_advice(adoptions, deletions, let_through),
        )
    return None


def adoption_advice(adoptions: int, deletions: int, settings: Sequence[str]) -> str:
    """What a brake adds when the plan replaces bot keys that rotator did not create: first-run adoption."""
    if not adoptions:
        return ""
    which = f"all {deletions} deletions are" if adoptions == deletions else f"{adoptions} of the {deletions} deletions are"
    return (
        f". This is first-run adoption: {which} bot keys that rotator did not create (not in its store, so it can"
        " never hand them out), each replaced by a new, stored key. To adopt: review the plan's adopt: replace rows"
        f" (rotator plan --job bot-keys), then apply it once with {' and '.join(settings)}, and unset"
        f" {'it' if len(settings) == 1 else 'them'} afterwards. If Gen3Workflow hands out bot keys from its own database,"
        " use ROTATOR_BOT_KEYS__STORE=gen3workflow-db (or ROTATOR_GEN3WORKFLOW_CONFIG) instead: the service's keys are"
        " stored there already and need no replacement."
    )
