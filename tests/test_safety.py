"""Safety brakes and the account check, as pure functions (the jobs' tests cover them end to end)."""

import pytest

from rotator.errors import AccountNotAllowed
from rotator.model import CREATE_KEY, DELETE_KEY, DELETE_SECRET, FORGET_KEY, Action
from rotator.safety import check_account, check_brakes
from rotator.settings import SafetySettings


def actions(deletions=0, creates=0, forgets=0, kind=DELETE_KEY):
    made = [Action(job="j", kind=kind, target=f"d{i}", reason="r") for i in range(deletions)]
    made += [Action(job="j", kind=CREATE_KEY, target=f"c{i}", reason="r") for i in range(creates)]
    made += [Action(job="j", kind=FORGET_KEY, target=f"f{i}", reason="r") for i in range(forgets)]
    return made


DEFAULTS = SafetySettings()  # 500 deletions, 0.5 of at least 20 managed


@pytest.mark.parametrize(
    ("plan", "managed", "limit"),
    [
        (actions(500), 10_000, None),  # at the limit: allowed
        (actions(501), 10_000, "max_deletions"),
        (actions(501, kind=DELETE_SECRET), 10_000, "max_deletions"),  # secrets count too
        (actions(10), 20, None),  # exactly half
        (actions(11), 20, "max_deletion_fraction"),
        (actions(19), 19, None),  # too few managed for the fraction brake to mean anything
        (actions(0, creates=600, forgets=600), 10, None),  # only deletions count
        (actions(0), 0, None),
    ],
)
def test_brakes(plan, managed, limit):
    brake = check_brakes("user-keys", plan, managed=managed, settings=DEFAULTS)
    assert (brake.limit if brake else None) == limit


def test_brake_message_names_the_job_the_numbers_and_the_setting():
    brake = check_brakes("bot-keys", actions(30), managed=40, settings=DEFAULTS)
    assert brake.message.startswith("bot-keys: plan deletes 30 of 40 managed (75%)")
    assert "ROTATOR_SAFETY__MAX_DELETION_FRACTION=0.5" in brake.message
    brake = check_brakes("bot-keys", actions(3), managed=1000, settings=SafetySettings(max_deletions=2))
    assert "ROTATOR_SAFETY__MAX_DELETIONS=2" in brake.message


def test_max_deletions_zero_refuses_any_deletion_but_not_creation():
    settings = SafetySettings(max_deletions=0)
    assert check_brakes("j", actions(0, creates=2), managed=5, settings=settings) is None
    assert check_brakes("j", actions(1), managed=5, settings=settings).limit == "max_deletions"


def test_account_check():
    check_account("123456789012", None)  # no allow-list: anything goes
    check_account("123456789012", ["123456789012", "210987654321"])
    with pytest.raises(AccountNotAllowed, match="123456789012 is not in ROTATOR_ALLOWED_ACCOUNT_IDS"):
        check_account("123456789012", ["210987654321"])
