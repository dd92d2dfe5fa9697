import json

import pytest

from helpers import T0, days
from rotator.keystore import StoreUnreadable
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import NewKey

PREFIX = "gen3wf-rotator/gen3.example.org/bot-keys/"
USER = "gen3wf-gen3-example-org-1-bot"
OLD, NEW = "AKIAOLDOLDOLDOLD0001", "AKIANEWNEWNEWNEW0002"


@pytest.fixture
def store(aws):
    return SecretsManagerStore(aws.client("secretsmanager"), prefix=PREFIX)


def value(aws, user=USER):
    return json.loads(aws.client("secretsmanager").get_secret_value(SecretId=PREFIX + user, VersionStage="AWSCURRENT")["SecretString"])


def test_newest_first_and_index(aws, store):
    store.add(NewKey(USER, OLD, T0, "old-secret"))
    store.add(NewKey(USER, NEW, T0 + days(15), "new-secret"))
    assert [e["access_key_id"] for e in value(aws)] == [NEW, OLD]
    assert value(aws)[0] == {"access_key_id": NEW, "secret_access_key": "new-secret", "created": (T0 + days(15)).isoformat()}
    assert store.stored_key_ids(USER) == {NEW, OLD}
    assert store.index() == {USER: 2}

    store.remove(USER, {OLD, "AKIAUNKNOWNUNKNOWN01"})
    assert [e["access_key_id"] for e in value(aws)] == [NEW]
    assert store.index() == {USER: 1}


def test_unknown_user_has_nothing_stored(store):
    assert store.stored_key_ids("nobody-bot") == frozenset()
    store.remove("nobody-bot", {"AKIAXXXXXXXXXXXXXXXX"})  # nothing to do, no error
    assert store.index() == {}


def test_index_ignores_other_secrets(aws, store):
    aws.client("secretsmanager").create_secret(Name="gen3wf-rotator/other.org/bot-keys/x-bot", SecretString="[]")
    aws.client("secretsmanager").create_secret(Name="tower-abc/TOKEN", SecretString="t")
    store.add(NewKey(USER, "AKIA1AAAAAAAAAAAAAAA", T0, "s"))
    assert store.index() == {USER: 1}


def test_unreadable_value_is_an_error_without_echoing_it(aws, store):
    aws.client("secretsmanager").create_secret(Name=PREFIX + USER, SecretString='{"sekrit": "do-not-print"}')
    with pytest.raises(StoreUnreadable) as info:
        store.stored_key_ids(USER)
    assert "do-not-print" not in str(info.value)


def test_new_key_repr_hides_the_secret():
    assert "hunter2" not in repr(NewKey(USER, "AKIA1AAAAAAAAAAAAAAA", T0, "hunter2"))


def test_index_counts_from_the_current_version_id_written_with_the_value(aws, store):
    sm = aws.client("secretsmanager")
    store.add(NewKey(USER, OLD, T0, "old-secret"))
    store.add_pending(NewKey(USER, NEW, T0 + days(15), "new-secret"))
    assert store.index() == {USER: 1}  # the staged version (two keys) is not what readers take yet
    store.add(NewKey(USER, NEW, T0 + days(15), "new-secret"))
    assert store.index() == {USER: 2}
    current = sm.get_secret_value(SecretId=PREFIX + USER, VersionStage="AWSCURRENT")["VersionId"]
    assert current.endswith(".k2")
    # no call besides the value's own writes: the description is never rewritten
    assert "key ids" not in sm.describe_secret(SecretId=PREFIX + USER)["Description"]


def test_index_reads_the_description_of_secrets_written_before_the_version_id_index(aws, store):
    sm = aws.client("secretsmanager")
    entries = [{"access_key_id": k, "secret_access_key": "s", "created": T0.isoformat()} for k in (OLD, NEW)]
    sm.create_secret(Name=PREFIX + USER, SecretString=json.dumps(entries),
                     Description=f"Gen3Workflow bot keys of {USER}, managed by gen3wf-rotator; key ids: {OLD},{NEW}")
    other = "gen3wf-gen3-example-org-2-bot"
    sm.create_secret(Name=PREFIX + other, SecretString="[]", Description="written by hand")
    assert store.index() == {USER: 2, other: 0}
    store.remove(USER, {OLD})  # the first write by this version moves the count into the version id
    assert store.index() == {USER: 1, other: 0}
