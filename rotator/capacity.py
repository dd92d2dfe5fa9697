"""The account's IAM user quota: Gen3Workflow makes two IAM users per Gen3 user, and at the
quota (5,000 users, not raisable) its CreateUser fails and new users cannot run workflows.

Read once per run with one ``GetAccountSummary``; advisory only: any failure is one warning,
never a failed job, and changes no exit code.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from rotator.aws import describe_error

log = structlog.get_logger("rotator.capacity")

PERMISSIONS = ("iam:GetAccountSummary",)
USERS_PER_WORKFLOW_USER = 2  # gen3wf-<H>-<id> and gen3wf-<H>-<id>-bot


@dataclass(frozen=True)
class UserQuota:
    users: int
    quota: int

    @property
    def fraction(self) -> float:
        return self.users / self.quota if self.quota else 1.0

    @property
    def room_for_workflow_users(self) -> int:
        return max(self.quota - self.users, 0) // USERS_PER_WORKFLOW_USER

    def summary(self) -> str:
        return (
            f"IAM users: {self.users:,} of {self.quota:,} ({self.fraction:.0%}):"
            f" room for about {self.room_for_workflow_users:,} more workflow users"
        ).replace("%)", " %)")


def read_user_quota(aws, *, warn_fraction: float) -> UserQuota | None:
    """The account's IAM users and their quota, warning at ``warn_fraction``; None if it cannot be read."""
    try:
        summary = aws.client("iam").get_account_summary()["SummaryMap"]
        users, quota = summary["Users"], summary["UsersQuota"]
        if not (isinstance(users, int) and isinstance(quota, int)) or quota <= 0 or users < 0:
            raise ValueError("GetAccountSummary answered without usable Users/UsersQuota")
    except Exception as exc:  # noqa: BLE001 - advisory: never fails a run
        log.warning("account.user_quota_unavailable", error=describe_error(exc) if not isinstance(exc, ValueError) else str(exc))
        return None
    found = UserQuota(users=users, quota=quota)
    if found.fraction >= warn_fraction:
        log.warning(
            "account.user_quota",
            users=users,
            quota=quota,
            fraction=round(found.fraction, 4),
            room_for_workflow_users=found.room_for_workflow_users,
            hint="at the quota Gen3Workflow cannot create IAM users for new users; use another account for new deployments",
        )
    return found
