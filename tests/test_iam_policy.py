"""The shipped least-privilege policy allows every AWS operation the code can call, and nothing more."""

import fnmatch
import json
from pathlib import Path

import pytest
from freezegun import freeze_time

from fake_status_api import FakeStatusApi
from helpers import HOST, T0, TAG, days, make_key, make_user
from rotator import aws as aws_module
from rotator import capacity, restore
from rotator.jobs import REGISTRY
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import NewKey
from rotator.names import bot_user_name, iam_user_name
from rotator.runner import Runner
from rotator.settings import load_settings

POLICY = json.loads((Path(__file__).parent.parent / "helm/rotator/files/iam-policy.json").read_text())
DECLARED = set(
    aws_module.PERMISSIONS + capacity.PERMISSIONS + restore.PERMISSIONS + tuple(p for job in REGISTRY for p in job.permissions)
)
# AWS offers no resource-level permission for these: "*" is the only possible resource.
RESOURCELESS = {
    "sts:GetCallerIdentity", "iam:GetAccountAuthorizationDetails", "iam:GenerateCredentialReport",
    "iam:GetCredentialReport", "iam:GetAccountSummary", "secretsmanager:ListSecrets",
}
PREFIX = {"iam": "iam", "sts": "sts", "secretsmanager": "secretsmanager"}


def _statements():
    for s in POLICY["Statement"]:
        assert s["Effect"] == "Allow"
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        yield actions, resources


def allowed(action: str, resource: str) -> bool:
    return any(action in actions and any(fnmatch.fnmatchcase(resource, r) for r in resources) for actions, resources in _statements())


def test_policy_grants_exactly_what_the_code_declares():
    granted = {a for actions, _ in _statements() for a in actions}
    assert granted == DECLARED


def test_star_only_where_aws_requires_it():
    for actions, resources in _statements():
        if "*" in resources:
            assert set(actions) <= RESOURCELESS, actions
    for action in RESOURCELESS:
        assert allowed(action, "*")


def test_iam_scoped_to_gen3wf_users_and_secrets_to_our_prefixes():
    assert allowed("iam:DeleteAccessKey", "arn:aws:iam::123456789012:user/gen3wf-h-1")
    assert not allowed("iam:DeleteAccessKey", "arn:aws:iam::123456789012:user/ci-deployer")
    assert not allowed("iam:CreateAccessKey", "arn:aws:iam::123456789012:user/admin")
    assert allowed("secretsmanager:DeleteSecret", "arn:aws:secretsmanager:us-east-1:1:secret:tower-abc/TOKEN-AbCdEf")
    assert not allowed("secretsmanager:DeleteSecret", "arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbCdEf")
    assert not allowed("secretsmanager:DeleteSecret", "arn:aws:secretsmanager:us-east-1:1:secret:gen3wf-rotator/h/bot-keys/x-AbCdEf")
    assert not allowed("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:1:secret:tower-abc/TOKEN-AbCdEf")


def _resource(service: str, params: dict) -> str:
    if service == "iam" and "UserName" in params:
        return f"arn:aws:iam::123456789012:user/{params['UserName']}"
    if service == "secretsmanager" and ("SecretId" in params or "Name" in params):
        secret = params.get("SecretId") or params["Name"]
        if secret.startswith("arn:"):
            return secret
        return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{secret}-AbCdEf"
    return "*"


@pytest.fixture
def recorded(aws):
    calls = []

    def record(model, params, **kwargs):
        calls.append((f"{PREFIX[model.service_model.service_name]}:{model.name}", _resource(model.service_model.service_name, params)))

    clients = [aws.client(service, retries=retries) for service in ("iam", "sts", "secretsmanager") for retries in (True, False)]
    for client in clients:
        client.meta.events.register("provide-client-params", record, unique_id="record-calls")
    yield calls
    for client in clients:
        client.meta.events.unregister("provide-client-params", unique_id="record-calls")


def test_every_call_of_a_full_run_is_allowed(aws, monkeypatch, recorded):
    """Run every job (and restore) with apply against moto and check each call against the policy."""
    api = FakeStatusApi().start()
    try:
        monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
        monkeypatch.setenv("ROTATOR_ALLOWED_ACCOUNT_IDS", '["123456789012"]')
        monkeypatch.setenv("ROTATOR_RUN_SECRETS__STATUS_SOURCE", "seqera")
        monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__URL", api.seqera_url)
        monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__TOKEN", api.token)
        settings = load_settings()
        iam, sm = aws.client("iam"), aws.client("secretsmanager")
        store = SecretsManagerStore(sm, prefix=settings.bot_secret_prefix)
        with freeze_time(T0):
            for name in (iam_user_name(HOST, "1"), bot_user_name(HOST, "1"), bot_user_name(HOST, "2")):
                make_user(iam, name, TAG)
            make_key(iam, iam_user_name(HOST, "1"), created=T0)
            make_key(iam, bot_user_name(HOST, "1"), created=T0, store=store)
            store.add(NewKey(bot_user_name(HOST, "1"), "AKIAGONEGONEGONEGONE", T0, "s"))  # forgotten by the run
            sm.create_secret(Name="tower-run1/TOKEN", SecretString="v", AddReplicaRegions=[{"Region": "us-west-2"}])
            sm.create_secret(Name="tower-run2/TOKEN", SecretString="v")
        api.seqera.update(run1="SUCCEEDED", run2="SUCCEEDED")
        monkeypatch.setenv("ROTATOR_RUN_SECRETS__REMOVE_REPLICAS", "true")
        settings = load_settings()
        recorded.clear()
        with freeze_time(T0 + days(40)):
            result = Runner(settings, aws=aws).run(["user-keys", "bot-keys", "run-secrets"], dry_run=False)
        assert result.exit_code == 0
        restore.restore_secrets(sm, run_ids=None)
    finally:
        api.stop()

    operations = {action for action, _ in recorded}
    # the run exercised every kind of change
    assert {"iam:DeleteAccessKey", "iam:CreateAccessKey", "secretsmanager:UpdateSecret", "secretsmanager:CreateSecret",
            "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:DeleteSecret", "secretsmanager:RemoveRegionsFromReplication", "secretsmanager:RestoreSecret"} <= operations
    for action, resource in recorded:
        assert action in DECLARED, f"{action} is called but not declared"
        assert allowed(action, resource), f"the policy does not allow {action} on {resource}"
