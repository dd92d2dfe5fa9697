import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.names import bot_user_name, iam_user_name, owner_tag_value, parse_user_name

LONG_HOST = "a-very-long-hostname-for-a-gen3-data-commons.example-consortium.org"


@pytest.mark.parametrize(
    ("hostname", "user_id", "expected"),
    [
        ("gen3.example.org", "42", "gen3wf-gen3-example-org-42"),
        ("gen3.example.org", "42-bot", "gen3wf-gen3-example-org-42-bot"),
        # cut so that the whole name is 63 characters; the user id is never cut
        (LONG_HOST, "1234", "gen3wf-a-very-long-hostname-for-a-gen3-data-commons-example-co-1234"[:58] + "-1234"),
    ],
)
def test_iam_user_name_mirrors_the_service(hostname, user_id, expected):
    name = iam_user_name(hostname, user_id)
    assert name == expected
    assert len(name) <= 63


@pytest.mark.parametrize(
    ("name", "hostname", "user_id", "kind"),
    [
        ("gen3wf-gen3-example-org-42", "gen3.example.org", "42", "user"),
        ("gen3wf-gen3-example-org-42-bot", "gen3.example.org", "42", "bot"),
        (iam_user_name(LONG_HOST, "1234"), LONG_HOST, "1234", "user"),
        (bot_user_name(LONG_HOST, "1234"), LONG_HOST, "1234", "bot"),
        ("gen3wf-gen3-example-org-bot", "gen3.example.org", "bot", "user"),  # a user literally called "bot"
    ],
)
def test_parse_user_name(name, hostname, user_id, kind):
    parsed = parse_user_name(name, hostname=hostname)
    assert (parsed.user_id, parsed.kind) == (user_id, kind)


@pytest.mark.parametrize(
    "name",
    [
        "gen3wf-gen3-example-org",  # no user id
        "gen3wf-gen3-example-org-",  # empty user id
        "gen3wf-other-example-org-42",  # another hostname
        "gen3wf-gen3-example-42",  # cut although it did not need to be
        "ci-deployer",
    ],
)
def test_parse_rejects_names_the_service_never_builds(name):
    assert parse_user_name(name, hostname="gen3.example.org") is None


def test_owner_tag_is_never_cut():
    assert owner_tag_value(LONG_HOST) == "gen3wf-" + LONG_HOST.replace(".", "-")


hostnames = st.from_regex(r"\A[a-z0-9]{1,20}(\.[a-z0-9-]{1,20}){0,3}\Z")
user_ids = st.from_regex(r"\A[A-Za-z0-9_]{1,30}(-[A-Za-z0-9_]{1,8})?\Z")


@given(hostname=hostnames, user_id=user_ids, bot=st.booleans())
def test_parse_inverts_the_naming_rule(hostname, user_id, bot):
    name = bot_user_name(hostname, user_id) if bot else iam_user_name(hostname, user_id)
    parsed = parse_user_name(name, hostname=hostname)
    assert parsed is not None
    # Whichever reading is returned rebuilds exactly the same name, with the same kind.
    rebuilt = bot_user_name(hostname, parsed.user_id) if parsed.kind == "bot" else iam_user_name(hostname, parsed.user_id)
    assert rebuilt == name
    if not user_id.endswith("-bot"):
        assert parsed.kind == ("bot" if bot else "user")
