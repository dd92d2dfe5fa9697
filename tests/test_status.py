"""``rotator status`` (#15): managed users, their keys, ages, days to expiry, stored state; read-only.

The CLI runs in process against moto in process, as in test_cli_operator.py.
"""

import json
from datetime import timedelta
from importlib.resources import files

import jsonschema
import pytest
from freezegun import freeze_time

from helpers import HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator import cli
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import AccessKey
from rotator.names import bot_user_name, iam_user_name, owner_tag_value
from rotator.settings import load_settings
from rotator.status import EXPIRED, INACTIVE, LIVE, NOT_IN_IAM, bot_key_statuses, key_status, read_status

PREFIX = f"gen3wf-rotator/{HOST}/bot-keys/"
NOW = T0 + days(40)
USER, USER_NO_KEYS = iam_user_name(HOST, "1"), iam_user_name(HOST, "3")
BOT, BOT_2 = bot_user_name(HOST, "1"), bot_user_name(HOST, "2")
DECOY = iam_user_name("other.example.org", "1")


@pytest.fixture
def seeded(aws):
    """An end user (expired and fresh keys), a healthy bot user, a bot user with an unstored key
    and a stored key IAM no longer has, a user without keys, and a decoy of another hostname."""
    iam = aws.client("iam")
    store = SecretsManagerStore(aws.client("secretsmanager"), prefix=PREFIX)
    with freeze_time(T0):
        for name in (USER, BOT, BOT_2, USER_NO_KEYS):
            make_user(iam, name, TAG)
        make_user(iam, DECOY, owner_tag_value("other.example.org"))
        keys = {
            "expired": make_key(iam, USER, created=T0),
            "fresh": make_key(iam, USER, created=T0 + days(37)),
            "bot_older": make_key(iam, BOT, created=T0 + days(20), store=store),
            "bot_newer": make_key(iam, BOT, created=T0 + days(35), store=store),
            "unstored": make_key(iam, BOT_2, created=T0 + days(3)),
            "gone": make_key(iam, BOT_2, created=T0 + days(39), store=store),
            "decoy": make_key(iam, DECOY, created=T0),
        }
        iam.delete_access_key(UserName=BOT_2, AccessKeyId=keys["gone"].key_id)  # the store still names it
    return keys


def status(monkeypatch, capsys, *args, **env):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    with freeze_time(NOW):
        code = cli.main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_lists_users_keys_ages_days_to_expiry_and_store_positions(aws, monkeypatch, capsys, seeded):
    code, out, _ = status(monkeypatch, capsys, "--output", "json")
    assert code == 0
    doc = json.loads(out)
    jsonschema.validate(doc, json.loads(files("rotator.schemas").joinpath("status-document.schema.json").read_text()),
                        format_checker=jsonschema.FormatChecker())
    assert (doc["command"], doc["hostname"], doc["store"]) == ("status", HOST, "secretsmanager")
    assert doc["account"] == "123456789012"
    users = {u["user"]: u for u in doc["users"]}
    assert sorted(users) == sorted([USER, BOT, BOT_2, USER_NO_KEYS])  # never the decoy of another hostname
    assert (users[USER]["kind"], users[BOT]["kind"]) == ("user", "bot")

    def by_id(user):
        return {k["key_id"]: k for k in users[user]["keys"]}

    expired, fresh = by_id(USER)[seeded["expired"].key_id], by_id(USER)[seeded["fresh"].key_id]
    assert (expired["state"], expired["age_days"], expired["days_to_expiry"], expired["expired"]) == (EXPIRED, 40, None, True)
    assert (fresh["state"], fresh["age_days"], fresh["days_to_expiry"], fresh["expired"]) == (LIVE, 3, 28, False)
    assert fresh["stored"] is None and fresh["store_position"] is None  # end users' keys are not stored
    bot = by_id(BOT)
    assert (bot[seeded["bot_newer"].key_id]["store_position"], bot[seeded["bot_older"].key_id]["store_position"]) == (1, 2)
    assert all(k["stored"] for k in bot.values())
    bot_2 = by_id(BOT_2)
    assert bot_2[seeded["unstored"].key_id]["stored"] is False and bot_2[seeded["unstored"].key_id]["store_position"] is None
    # the store's first entry names a key IAM no longer has: the service hands out a dead key, and status says so
    assert bot_2[seeded["gone"].key_id] == {
        "key_id": seeded["gone"].key_id, "state": NOT_IN_IAM, "created": None, "age_days": None, "days_to_expiry": None,
        "expired": None, "stored": True, "store_position": 1,
    }
    assert users[USER_NO_KEYS]["keys"] == []
    assert doc["summary"] == {"users": 2, "bot_users": 2, "keys": {"expired": 2, "live": 3, "not-in-iam": 1},
                              "unhealthy_bot_users": 1, "errors": 0}


def test_status_text_fits_80_columns_and_never_shows_a_secret(aws, monkeypatch, capsys, seeded):
    code, out, err = status(monkeypatch, capsys)
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert f"{BOT} · bot user, key lifetime 30d" in lines
    newer = next(line for line in lines if seeded["bot_newer"].key_id in line)
    assert newer.split() == [seeded["bot_newer"].key_id, "live", "5d", "in", "26d", "1", "(served)"]
    assert next(line for line in lines if seeded["unstored"].key_id in line).split()[-1] == "no"
    assert "stored, not in IAM" in next(line for line in lines if seeded["gone"].key_id in line)
    assert "(no access keys)" in out
    assert DECOY not in out + err
    for key in seeded.values():
        assert key.secret not in out + err


def test_status_user_limits_it_to_those_users(aws, monkeypatch, capsys, seeded):
    code, out, _ = status(monkeypatch, capsys, "--output", "json", "--user", BOT, "--user", DECOY)
    doc = json.loads(out)
    assert code == 0
    assert [u["user"] for u in doc["users"]] == [BOT]
    assert doc["not_managed"] == [DECOY]  # another hostname's user is not ours to show


def test_status_makes_only_read_calls(aws, monkeypatch, seeded):
    calls = []

    def record(model, **_):
        calls.append(model.name)

    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    aws.on("before-call", record, unique_id="test-status-read-only")
    try:
        read_status(load_settings(), aws, account_id="123456789012", now=NOW)
    finally:
        aws.off("test-status-read-only")
    assert {"GetAccountAuthorizationDetails", "ListAccessKeys", "GetSecretValue"} <= set(calls)
    assert all(name.startswith(("Get", "List")) for name in calls), sorted(set(calls))
    assert key_ids(aws.client("iam"), USER) == {seeded["expired"].key_id, seeded["fresh"].key_id}  # nothing deleted


def test_an_unreadable_store_entry_is_shown_and_exits_1(aws, monkeypatch, capsys, seeded):
    aws.client("secretsmanager").create_secret(Name=PREFIX + USER_NO_KEYS + "-bot", SecretString="not a key list")
    make_user(aws.client("iam"), USER_NO_KEYS + "-bot", TAG)
    code, out, _ = status(monkeypatch, capsys, "--output", "json")
    assert code == 1
    broken = next(u for u in json.loads(out)["users"] if u["user"] == USER_NO_KEYS + "-bot")
    assert broken["error"].startswith("store unreadable:")


def key(age: timedelta, *, active: bool = True) -> AccessKey:
    return AccessKey("AKIA", active, NOW - age)


@pytest.mark.parametrize(
    ("age", "active", "state", "left"),
    [
        (timedelta(0), True, LIVE, 31),  # the service shows it expired once (now - created).days > 30
        (days(3), True, LIVE, 28),
        (days(30) + timedelta(hours=23), True, LIVE, 0),  # 30 whole days: not expired yet, no earlier
        (days(31), True, EXPIRED, None),
        (days(1), False, INACTIVE, None),
    ],
)
def test_days_to_expiry_follow_the_services_rule(age, active, state, left):
    found = key_status(key(age, active=active), now=NOW, lifetime_days=30)
    assert (found.state, found.days_to_expiry) == (state, left)


def test_store_positions_are_newest_first_with_the_served_entry_first():
    older, newer = AccessKey("AKIAOLD", True, NOW - days(20)), AccessKey("AKIANEW", True, NOW - days(5))
    statuses = bot_key_statuses([older, newer], stored={"AKIAOLD", "AKIANEW"}, served=None, now=NOW, lifetime_days=30)
    assert [(s.key_id, s.store_position) for s in statuses] == [("AKIAOLD", 2), ("AKIANEW", 1)]
    stale = bot_key_statuses([older], stored={"AKIAOLD", "AKIAGONE"}, served="AKIAGONE", now=NOW, lifetime_days=30)
    assert [(s.key_id, s.state, s.store_position) for s in stale] == [("AKIAOLD", LIVE, 2), ("AKIAGONE", NOT_IN_IAM, 1)]


def test_a_stored_entry_iam_lacks_behind_the_served_key_shows_as_stored():
    from rotator.status import Status, UserStatus, render_text

    newer = AccessKey("AKIANEWNEWNEWNEW0001", True, NOW - days(2))
    statuses = bot_key_statuses([newer], stored={newer.key_id, "AKIAGONEGONEGONE0002"}, served=newer.key_id, now=NOW,
                                lifetime_days=30)
    assert [(s.key_id, s.store_position) for s in statuses] == [(newer.key_id, 1), ("AKIAGONEGONEGONE0002", None)]
    found = Status(now=NOW, hostname=HOST, account_id="123456789012", store="secretsmanager", lifetimes={"user": 30, "bot": 30},
                   users=(UserStatus(BOT, "bot", 30, statuses),))
    lines = render_text(found, width=80).splitlines()
    assert next(line for line in lines if "AKIAGONEGONEGONE0002" in line).split()[-1] == "yes"
    assert next(line for line in lines if newer.key_id in line).endswith("1 (served)")


def test_status_of_a_hostname_without_users_says_so(aws, monkeypatch, capsys, seeded):
    code, out, err = status(monkeypatch, capsys, ROTATOR_HOSTNAME="typo.example.org")
    assert code == 0
    assert "no managed users (none tagged name=gen3wf-typo-example-org)" in out
    assert "is ROTATOR_HOSTNAME right?" in err  # the inventory's warning


def test_an_account_whose_users_cannot_be_listed_is_exit_1_in_one_line(aws, monkeypatch, capsys, seeded):
    from botocore.exceptions import EndpointConnectionError

    from rotator import inventory

    def unreachable(*_args, **_kwargs):
        raise EndpointConnectionError(endpoint_url="https://iam.amazonaws.com/")

    monkeypatch.setattr(inventory, "list_managed_users", unreachable)
    code, out, err = status(monkeypatch, capsys)
    assert code == 1 and out == ""
    (line,) = [line for line in err.splitlines() if line.startswith("rotator: ")]
    assert line.startswith("rotator: status: cannot list the account's users: EndpointConnectionError")
    assert "Traceback" not in err
