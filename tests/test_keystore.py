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
