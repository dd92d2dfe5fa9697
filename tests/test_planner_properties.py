"""Properties of the planner over generated account states."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.inventory import classify_user
from rotator.jobs.bot_keys import plan_bot_keys
from rotator.jobs.user_keys import plan_user_keys
from rotator.model import CREATE_KEY, DELETE_KEY, FORGET_KEY, AccessKey, BotState, ManagedUser, UserKeys
from rotator.names import iam_user_name, owner_tag_value, parse_user_name
from rotator.settings import BotKeysSettings, UserKeysSettings

NOW = datetime(2026, 11, 22, tzinfo=UTC)

ages = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=120))
access_keys = st.builds(
    AccessKey,
    key_id=st.sampled_from(["AKIA1", "AKIA2", "AKIA3"]),
    active=st.booleans(),
    created=ages.map(lambda a: NOW - a),
)
key_sets = st.lists(access_keys, max_size=2, unique_by=lambda k: k.key_id).map(tuple)
bot_settings = st.builds(
    BotKeysSettings,
    lifetime_days=st.integers(1, 90),
    orphan_grace_minutes=st.integers(0, 600),
)
bot_states = st.builds(
    BotState,
    user=st.just(ManagedUser("gen3wf-h-1-bot", "bot")),
    keys=key_sets,
    stored_key_ids=st.frozensets(st.sampled_from(["AKIA1", "AKIA2", "AKIA3", "AKIA9"])),
)


def _expired(k: AccessKey, lifetime: int) -> bool:
    return not k.active or (NOW - k.created).days > lifetime


@settings(max_examples=300)
@given(state=bot_states, s=bot_settings)
def test_bot_user_never_ends_with_more_than_two_keys(state, s):
    actions = plan_bot_keys([state], now=NOW, settings=s)
    deleted = {a.key_id for a in actions if a.kind == DELETE_KEY}
    created = sum(1 for a in actions if a.kind == CREATE_KEY)
    remaining = len([k for k in state.keys if k.key_id not in deleted])
    assert remaining + created == 2
    # never more than two keys at any moment (the quota): replay the actions in order
    count = len(state.keys)
    for action in actions:
        count += {DELETE_KEY: -1, CREATE_KEY: 1}.get(action.kind, 0)
        assert 0 <= count <= 2, actions


@settings(max_examples=300)
@given(state=bot_states, s=bot_settings)
def test_make_before_break(state, s):
    """A stored key is deleted only once another stored key (kept or new) stands: the store never runs dry."""
    actions = plan_bot_keys([state], now=NOW, settings=s)
    usable = {k.key_id for k in state.keys if k.active} & state.stored_key_ids
    standing = set(usable)
    for action in actions:
        if action.kind == CREATE_KEY:
            standing.add(object())  # the new key, stored before the next action
        elif action.kind == DELETE_KEY and action.key_id in usable:
            assert standing - {action.key_id}, (state, actions)
            standing.discard(action.key_id)
    if usable:
        assert standing  # a user that had a usable stored key still has one


@settings(max_examples=300)
@given(state=bot_states, s=bot_settings)
def test_newest_live_key_is_deleted_only_when_a_fresher_one_replaces_it(state, s):
    live = [k for k in state.keys if not _expired(k, s.lifetime_days)]
    actions = plan_bot_keys([state], now=NOW, settings=s)
    if live:
        newest = max(live, key=lambda k: (k.created, k.key_id))
        if any(a.kind == DELETE_KEY and a.key_id == newest.key_id for a in actions):
            assert any(a.kind == CREATE_KEY for a in actions)


@settings(max_examples=300)
@given(state=bot_states, s=bot_settings)
def test_bot_plan_only_touches_its_own_user_and_known_keys(state, s):
    ids = {k.key_id for k in state.keys}
    for a in plan_bot_keys([state], now=NOW, settings=s):
        assert a.user == state.user.name
        if a.kind == DELETE_KEY:
            assert a.key_id in ids
        if a.kind == FORGET_KEY:
            assert a.key_id in state.stored_key_ids - ids


@given(keys=key_sets, lifetime=st.integers(1, 90))
def test_user_keys_deletes_exactly_what_the_service_calls_expired(keys, lifetime):
    user = ManagedUser("gen3wf-h-1", "user")
    actions = plan_user_keys([UserKeys(user, keys)], now=NOW, settings=UserKeysSettings(lifetime_days=lifetime))
    assert {a.key_id for a in actions} == {k.key_id for k in keys if _expired(k, lifetime)}


HOST = "gen3.example.org"
names = st.one_of(
    st.builds(iam_user_name, st.sampled_from([HOST, "other.example.org", "gen3.example.net"]), st.from_regex(r"\A[0-9]{1,6}(-bot)?\Z")),
    st.from_regex(r"\Agen3wf-[a-z0-9-]{0,40}\Z"),
    st.text(min_size=1, max_size=20),
)
tag_values = st.sampled_from([None, owner_tag_value(HOST), owner_tag_value("other.example.org"), "gen3wf-gen3", ""])


@settings(max_examples=300)
@given(users=st.lists(st.tuples(names, tag_values), max_size=8, unique_by=lambda u: u[0]), s=bot_settings)
def test_no_action_on_an_unmanaged_user(users, s):
    """Whatever the account holds, only users with our tag and a name the rule rebuilds get actions."""
    ours = set()
    states = []
    for name, tag in users:
        found = classify_user(name, {"name": tag} if tag is not None else {}, hostname=HOST)
        if isinstance(found, ManagedUser):
            assert tag == owner_tag_value(HOST)
            parsed = parse_user_name(name, hostname=HOST)
            assert parsed is not None and parsed.kind == found.kind
            ours.add(name)
            old = AccessKey("AKIA1", True, NOW - timedelta(days=400))
            states.append((found, old))
    user_states = [UserKeys(u, (k,)) for u, k in states if u.kind == "user"]
    bot_states_ = [BotState(u, (k,), frozenset()) for u, k in states if u.kind == "bot"]
    actions = plan_user_keys(user_states, now=NOW, settings=UserKeysSettings()) + plan_bot_keys(bot_states_, now=NOW, settings=s)
    assert {a.user for a in actions} <= ours
    assert {a.user for a in actions} == ours  # and every managed user with an expired key gets one
