import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.names import AmbiguousName, bot_user_name, iam_user_name, owner_tag_value, parse_user_name, user_name_readings

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
    try:
        parsed = parse_user_name(name, hostname=hostname)
    except AmbiguousName:
        # Only when readings of both kinds exist, and digits do not settle it.
        readings = user_name_readings(name, hostname=hostname)
        preferred = [r for r in readings if r.user_id.isdigit()] or readings
        assert {r.kind for r in preferred} == {"user", "bot"}
        return
    assert parsed is not None
    # Whichever reading is returned rebuilds exactly the same name, with the same kind.
    rebuilt = bot_user_name(hostname, parsed.user_id) if parsed.kind == "bot" else iam_user_name(hostname, parsed.user_id)
    assert rebuilt == name
    if not user_id.endswith("-bot"):
        assert parsed.kind == ("bot" if bot else "user")


# A hostname long enough to be cut, where "-1-bot" also reads as "-bot" behind a less-cut prefix.
RES_1_HOST = "gen3-workflow.data-commons.university-hospital-res-1.example.org"


def test_a_bot_is_never_taken_for_an_end_user_named_bot():
    name = bot_user_name(RES_1_HOST, "1")
    assert name == "gen3wf-gen3-workflow-data-commons-university-hospital-res-1-bot"
    assert {(r.user_id, r.kind) for r in user_name_readings(name, hostname=RES_1_HOST)} >= {("bot", "user"), ("1", "bot")}
    parsed = parse_user_name(name, hostname=RES_1_HOST)
    assert (parsed.user_id, parsed.kind) == ("1", "bot")  # the Fence (digits) reading wins


# ... and one where the bot of the (non-Fence) user "ab" also reads as the end user "bot".
RE_AB_HOST = "gen3-workflow.data-commons.university-hospital-re-ab.example.org"


def test_readings_of_different_kinds_without_a_fence_id_are_never_guessed():
    name = bot_user_name(RE_AB_HOST, "ab")
    assert {("bot", "user"), ("ab", "bot")} <= {(r.user_id, r.kind) for r in user_name_readings(name, hostname=RE_AB_HOST)}
    with pytest.raises(AmbiguousName):
        parse_user_name(name, hostname=RE_AB_HOST)


def test_ambiguous_tagged_user_is_skipped_and_reported():
    from rotator.inventory import classify_user
    from rotator.model import Skipped

    found = classify_user(bot_user_name(RE_AB_HOST, "ab"), {"name": owner_tag_value(RE_AB_HOST)}, hostname=RE_AB_HOST)
    assert isinstance(found, Skipped) and found.reason.startswith("ambiguous")


def _service_iam_user_name(hostname: str, user_id: str) -> str:
    """Gen3Workflow's own rule, restated from its source: cut "gen3wf-<H>" so the name fits in 63."""
    escaped = hostname.replace(".", "-")
    safe_name = f"gen3wf-{escaped}"
    if len(f"{safe_name}-{user_id}") > 63:
        safe_name = safe_name[: 63 - len(f"-{user_id}")]
    return f"{safe_name}-{user_id}"


long_hostnames = st.from_regex(r"\A[a-z0-9]{5,20}(\.[a-z0-9]{1,12}(-[a-z0-9]{1,6})?){2,5}\Z").filter(lambda h: len(h) >= 40)
fence_ids = st.integers(min_value=1, max_value=10**9).map(str)


@given(hostname=long_hostnames, user_id=fence_ids, bot=st.booleans())
def test_fence_users_parse_back_exactly_on_long_hostnames(hostname, user_id, bot):
    """Property: for the service's own names of Fence users (digit ids), the parse gives that user and kind."""
    name = _service_iam_user_name(hostname, f"{user_id}-bot" if bot else user_id)
    assert name == (bot_user_name(hostname, user_id) if bot else iam_user_name(hostname, user_id))
    parsed = parse_user_name(name, hostname=hostname)
    assert (parsed.user_id, parsed.kind) == (user_id, "bot" if bot else "user")


def test_mixed_case_hostname_is_used_as_written(monkeypatch):
    from rotator.settings import load_settings

    monkeypatch.setenv("ROTATOR_HOSTNAME", "Data.Example.org")
    settings = load_settings()
    assert settings.hostname == "Data.Example.org"
    assert settings.owner_tag == "gen3wf-Data-Example-org"  # what the service tags its users with
