"""Table-driven planner tests: observed state in, actions out. No AWS, no clock."""

from datetime import UTC, datetime, timedelta

import pytest

from rotator.jobs.bot_keys import bot_may_need_action, plan_bot_keys
from rotator.jobs.user_keys import plan_user_keys, user_may_need_action
from rotator.model import CREATE_KEY, DELETE_KEY, FORGET_KEY, AccessKey, BotState, ManagedUser, ReportedKey, UserKeys
from rotator.settings import BotKeysSettings, UserKeysSettings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
USER = ManagedUser(name="gen3wf-gen3-example-org-7", kind="user")
BOT = ManagedUser(name="gen3wf-gen3-example-org-7-bot", kind="bot")


def key(key_id, age, active=True):
    return AccessKey(key_id=key_id, active=active, created=NOW - age)


def d(days, hours=0, minutes=0):
    return timedelta(days=days, hours=hours, minutes=minutes)


def summary(actions):
    return [(a.kind, a.key_id) for a in actions]


@pytest.mark.parametrize(
    ("keys", "settings", "deleted", "reason"),
    [
        ([key("A", d(30, 23))], UserKeysSettings(), [], None),  # 30 whole days: not expired yet
        ([key("A", d(31))], UserKeysSettings(), ["A"], "expired: 31d > 30d"),
        ([key("A", d(31) - timedelta(seconds=1))], UserKeysSettings(), [], None),
        ([key("A", d(0), active=False)], UserKeysSettings(), ["A"], "inactive"),
        ([key("A", d(0), active=False)], UserKeysSettings(delete_inactive=False), [], None),
        ([key("A", d(8))], UserKeysSettings(lifetime_days=7), ["A"], "expired: 8d > 7d"),
        ([key("A", d(40)), key("B", d(1))], UserKeysSettings(), ["A"], "expired: 40d > 30d"),
        ([key("A", -d(1))], UserKeysSettings(), [], None),  # clock skew: a key from the future is not expired
        ([], UserKeysSettings(), [], None),
    ],
)
def test_user_keys(keys, settings, deleted, reason):
    actions = plan_user_keys([UserKeys(USER, tuple(keys))], now=NOW, settings=settings)
    assert [a.key_id for a in actions] == deleted
    assert all(a.kind == DELETE_KEY and a.job == "user-keys" for a in actions)
    if reason:
        assert actions[0].reason == reason
        assert actions[0].target == f"{USER.name}/{deleted[0]}"


S = BotKeysSettings()  # lifetime 30d, rotation at 15d, grace 60m


@pytest.mark.parametrize(
    ("name", "keys", "stored", "expected"),
    [
        ("no keys", [], set(), [(CREATE_KEY, None), (CREATE_KEY, None)]),
        ("one key", [key("A", d(3))], {"A"}, [(CREATE_KEY, None)]),
        ("healthy staggered", [key("A", d(20)), key("B", d(5))], {"A", "B"}, []),
        ("rotation due at exactly lifetime/2", [key("A", d(29)), key("B", d(15))], {"A", "B"}, [(DELETE_KEY, "A"), (CREATE_KEY, None)]),
        ("rotation not due a minute before", [key("A", d(29)), key("B", d(15) - d(0, 0, 1))], {"A", "B"}, []),
        ("made together", [key("A", d(16)), key("B", d(16))], {"A", "B"}, [(DELETE_KEY, "A"), (CREATE_KEY, None)]),
        ("made together, young", [key("A", d(1)), key("B", d(1))], {"A", "B"}, []),
        ("one expired", [key("A", d(31)), key("B", d(10))], {"A", "B"}, [(DELETE_KEY, "A"), (CREATE_KEY, None)]),
        ("both expired", [key("A", d(45)), key("B", d(31))], {"A", "B"}, [(DELETE_KEY, "A"), (CREATE_KEY, None), (DELETE_KEY, "B"), (CREATE_KEY, None)]),  # one at a time
        ("inactive", [key("A", d(2), active=False), key("B", d(1))], {"A", "B"}, [(DELETE_KEY, "A"), (CREATE_KEY, None)]),
        ("orphan past grace", [key("A", d(5)), key("B", d(0, 1))], {"A"}, [(DELETE_KEY, "B"), (CREATE_KEY, None)]),
        ("orphan inside grace", [key("A", d(5)), key("B", d(0, 0, 59))], {"A"}, []),
        ("only an orphan", [key("A", d(2))], set(), [(DELETE_KEY, "A"), (CREATE_KEY, None), (CREATE_KEY, None)]),
        ("stored key gone from IAM", [key("A", d(5)), key("B", d(2))], {"A", "B", "Z"}, [(FORGET_KEY, "Z")]),
    ],
)
def test_bot_keys(name, keys, stored, expected):
    actions = plan_bot_keys([BotState(BOT, tuple(keys), frozenset(stored))], now=NOW, settings=S)
    assert summary(actions) == expected, name
    assert all(a.reason for a in actions)


def test_bot_reasons_read_well():
    actions = plan_bot_keys(
        [BotState(BOT, (key("A", d(16)), key("B", d(16))), frozenset({"A", "B"}))], now=NOW, settings=S
    )
    assert actions[0].reason == "rotation: newest key 16d >= 15d (lifetime 30d / 2)"
    assert actions[1].reason == "1 of 2 live keys, verified before use"
    unverified = BotKeysSettings(verify_timeout_seconds=0)
    assert plan_bot_keys([BotState(BOT, (), frozenset())], now=NOW, settings=unverified)[0].reason == "no live key"
    orphan = plan_bot_keys([BotState(BOT, (key("A", d(0, 3)),), frozenset())], now=NOW, settings=S)
    assert orphan[0].reason == "orphan: secret not stored, 3h old >= 60m grace"


def test_staggered_rotation_never_lets_the_handed_out_key_pass_half_its_life():
    """Simulate daily runs for a year from two keys made together."""
    settings = BotKeysSettings(lifetime_days=30)
    keys = {"K0": NOW, "K1": NOW}
    counter = 2
    for day in range(365):
        now = NOW + timedelta(days=day)
        state = BotState(BOT, tuple(AccessKey(k, True, c) for k, c in keys.items()), frozenset(keys))
        for action in plan_bot_keys([state], now=now, settings=settings):
            if action.kind == DELETE_KEY:
                assert not action.reason.startswith("expired")
                del keys[action.key_id]
            elif action.kind == CREATE_KEY:
                keys[f"K{counter}"] = now
                counter += 1
        assert len(keys) == 2
        newest = max(keys.values())
        assert now - newest < timedelta(days=15)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ([ReportedKey(True, NOW - d(3))], False),
        ([ReportedKey(True, NOW - d(31))], True),
        ([ReportedKey(False, NOW - d(1))], True),
        ([], False),
    ],
)
def test_user_candidates_from_the_report(reported, expected):
    assert user_may_need_action(reported, now=NOW, settings=UserKeysSettings()) is expected


@pytest.mark.parametrize(
    ("reported", "stored_count", "expected"),
    [
        ([ReportedKey(True, NOW - d(20)), ReportedKey(True, NOW - d(5))], 2, False),
        ([ReportedKey(True, NOW - d(20)), ReportedKey(True, NOW - d(5))], 1, True),  # something unstored
        ([ReportedKey(True, NOW - d(20)), ReportedKey(True, NOW - d(5))], None, True),
        ([ReportedKey(True, NOW - d(20)), ReportedKey(True, NOW - d(15))], 2, True),  # rotation due
        ([ReportedKey(True, NOW - d(5))], 1, True),
        ([], None, True),
        ([ReportedKey(True, NOW - d(3)), ReportedKey(False, NOW - d(1))], 2, True),
    ],
)
def test_bot_candidates_from_the_report(reported, stored_count, expected):
    assert bot_may_need_action(reported, stored_count=stored_count, now=NOW, settings=S) is expected
