"""Run-secret listing: the literal prefixes used as ListSecrets filters never miss a match."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.secret_inventory import list_run_secrets, pattern_prefixes
from rotator.settings import DEFAULT_RUN_SECRET_PATTERN


@pytest.mark.parametrize(
    ("pattern", "prefixes"),
    [
        (DEFAULT_RUN_SECRET_PATTERN, ("tower-",)),
        (r"^towers?-(?P<run_id>\w+)$", ("tower",)),  # the optional "s" is not part of every match
        (r"^tower-a*x(?P<run_id>\w+)", ("tower-",)),
        (r"^tower-a+x(?P<run_id>\w+)", ("tower-a",)),
        (r"^tower-a{2}(?P<run_id>\w+)", ("tower-a",)),
        (r"^towers{0,1}-(?P<run_id>\w+)", ("tower",)),  # {0,…} may repeat zero times, like ?
        (r"^towers{,2}-(?P<run_id>\w+)", ("tower",)),
        (r"^tower-x{0}(?P<run_id>\w+)", ("tower-",)),
        (r"^tower-a{0,3}b(?P<run_id>\w+)", ("tower-",)),
        (r"^tower-a{1,3}b(?P<run_id>\w+)", ("tower-a",)),
        (r"^tower-|^nf-(?P<run_id>\w+)", ("tower-", "nf-")),  # an alternation: one prefix each
        (r"^tower-(?P<run_id>\w+)|(?P<x>nf)-", ("tower-", "")),  # one unanchored alternative: list everything
        (r"^run\.(?P<run_id>\d+)", ("run.",)),
        (r"^run\-\d(?P<run_id>\d+)", ("run-",)),
        (r"^(?:tower|nf)-(?P<run_id>\w+)", ("",)),
        (r"^[tT]ower-(?P<run_id>\w+)", ("",)),
        (r"tower-(?P<run_id>\w+)", ("",)),
        (r"^(?i)tower-(?P<run_id>\w+)", ("",)),
        (r"^a(b|c)|^d", ("a", "d")),
    ],
)
def test_pattern_prefixes(pattern, prefixes):
    assert pattern_prefixes(pattern) == prefixes


_PIECES = st.sampled_from(["tower", "-", "nf", "s?", "a*", "b+", "c{1,3}", "c{0,2}", "c{,2}", "c{0}", "d{2}", r"\.", r"\-", "(x|y)", "[ab]", r"\d", "_", "/"])


@settings(max_examples=300, deadline=None)
@given(data=st.data(), alternatives=st.lists(st.lists(_PIECES, min_size=1, max_size=6), min_size=1, max_size=3))
def test_every_match_starts_with_a_prefix(data, alternatives):
    """Property: whatever the pattern, a name it matches starts with one of its prefixes (nothing is missed)."""
    pattern = "|".join("^" + "".join(alt) for alt in alternatives)
    name = data.draw(st.from_regex(re.compile(pattern), fullmatch=False))
    assert any(name.startswith(p) for p in pattern_prefixes(pattern)), (pattern, name, pattern_prefixes(pattern))


def test_alternation_lists_each_prefix(aws):
    sm = aws.client("secretsmanager")
    for name in ("tower-a1/TOKEN", "nf-b2/TOKEN", "towers-c3/TOKEN", "other/x"):
        sm.create_secret(Name=name, SecretString="v")
    found = list_run_secrets(sm, patterns=[r"^tower-(?P<run_id>\w+)/|^nf-(?P<run_id2>\w+)/", r"^towers?-(?P<run_id>\w+)/"])
    assert {s.name for s in found} == {"tower-a1/TOKEN", "nf-b2/TOKEN", "towers-c3/TOKEN"}


def test_an_unfiltered_listing_keeps_only_matching_names(aws):
    """A pattern without a literal prefix lists every secret: the others are not ours, not "malformed"."""
    sm = aws.client("secretsmanager")
    for name in ("Tower-a1/TOKEN", "prod/db-password", "gen3wf-rotator/h/bot-keys/x-bot"):
        sm.create_secret(Name=name, SecretString="v")
    found = list_run_secrets(sm, patterns=[r"^[tT]ower-(?P<run_id>\w+)/"], exclude_prefixes=["gen3wf-rotator/"])
    assert [(s.name, s.run_id) for s in found] == [("Tower-a1/TOKEN", "a1")]
