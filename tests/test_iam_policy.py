"""The least-privilege IAM policies allow every AWS operation the code can call, and nothing more.

Two policies: the static one shipped in helm/rotator/files/iam-policy.json (any hostname), and
the one the chart renders for its hostname, region and accounts (the ConfigMap and the
Crossplane Policy). A small evaluator of Allow statements (actions, resources, and the
StringEquals/StringLike conditions the policies use) decides each request, so the tag
conditions are tested as AWS would apply them, not just read.
"""

import fnmatch
import json
from pathlib import Path

import helm_python as helm
import pg
import pytest
import yaml
from cryptography.fernet import Fernet
from freezegun import freeze_time

from fake_status_api import FakeStatusApi
from helpers import ACCOUNT, HOST, T0, TAG, days, make_key, make_user
from rotator import aws as aws_module
from rotator import capacity, migrate, restore
from rotator.jobs import REGISTRY
from rotator.keystore.gen3workflow_db import Gen3WorkflowDbStore
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.model import NewKey
from rotator.names import bot_user_name, iam_user_name, owner_tag_value
from rotator.runner import Runner, utcnow
from rotator.secret_inventory import pattern_prefixes
from rotator.settings import load_settings

postgres_server = pg.postgres_server  # the fixture

CHART = Path(__file__).parent.parent / "helm/rotator"
STATIC = json.loads((CHART / "files/iam-policy.json").read_text())
REGION = "us-east-1"
DECLARED = set(
    aws_module.PERMISSIONS + capacity.PERMISSIONS + restore.PERMISSIONS + migrate.PERMISSIONS
    + tuple(p for job in REGISTRY for p in job.permissions)
)
# AWS offers no resource-level permission for these: "*" is the only possible resource.
RESOURCELESS = {
    "sts:GetCallerIdentity", "iam:GetAccountAuthorizationDetails", "iam:GenerateCredentialReport",
    "iam:GetCredentialReport", "iam:GetAccountSummary", "secretsmanager:ListSecrets",
}
PREFIX = {"iam": "iam", "sts": "sts", "secretsmanager": "secretsmanager"}
# The IAM user's tag that makes it the service's: the service authorization reference lists
# aws:ResourceTag/${TagKey} (and iam:ResourceTag/${TagKey}) as condition keys of the `user` resource.
OWNER_KEY = "aws:ResourceTag/name"


def rendered_policy(**values) -> dict:
    """The policy the chart renders for HOST in REGION and ACCOUNT (ConfigMap <fullname>-iam-policy)."""
    values = {"hostname": HOST, "aws": {"region": REGION}, "allowedAccountIds": [ACCOUNT], **values}
    manifests = helm.Chart.load(CHART).render(values=values, name="rotator", namespace="gen3")
    configmap = yaml.safe_load(manifests["rotator/templates/iam-policy.yaml"])
    return json.loads(configmap["data"]["iam-policy.json"])


RENDERED = rendered_policy()
# The gen3workflow-db store (its settings from gen3-workflow's config): no Secrets Manager store statement.
DB_STORE = {"gen3workflowConfig": {"secretName": "gen3workflow-g3auto"}, "botKeys": {"store": "gen3workflow-db"}}
RENDERED_DB = rendered_policy(**DB_STORE)
RENDERED_DB_MIGRATION = rendered_policy(**DB_STORE, iamPolicy={"storeMigration": True})
POLICIES = {"static": STATIC, "rendered": RENDERED, "rendered-db": RENDERED_DB, "rendered-db-migration": RENDERED_DB_MIGRATION}


# --- a small evaluator: Allow statements with Action, Resource and Condition ------------------


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str) -> bool:
    """IAM's `*` and `?` (fnmatch also knows [...], which no ARN or action here contains)."""
    assert "[" not in pattern, pattern
    return fnmatch.fnmatchcase(value, pattern)


CONDITION_OPERATORS = {
    "StringEquals": lambda have, wanted: have in wanted,
    "StringLike": lambda have, wanted: any(_wildcard(w, have) for w in wanted),
}


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    """Every operator and key must hold; a key missing from the request fails (as in AWS)."""
    context = {k.lower(): v for k, v in context.items()}  # condition key names are case-insensitive
    for operator, keys in condition.items():
        test = CONDITION_OPERATORS[operator]
        for key, wanted in keys.items():
            have = context.get(key.lower())
            if have is None or not test(have, _listed(wanted)):
                return False
    return True


def allowed(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether one of the policy's statements allows ``action`` on ``resource`` (else: implicit deny)."""
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        if not any(_wildcard(a.lower(), action.lower()) for a in _listed(statement["Action"])):
            continue
        if not any(_wildcard(r, resource) for r in _listed(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), context or {}):
            return True
    return False


def user_arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:iam::{account}:user/{name}"


def secret_arn(name: str, *, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf"


def owned(hostname: str = HOST) -> dict[str, str]:
    return {"aws:ResourceTag/name": owner_tag_value(hostname)}


def test_evaluator_follows_iam_semantics():
    policy = {"Statement": [{"Effect": "Allow", "Action": "iam:*AccessKey*", "Resource": "arn:aws:iam::*:user/a-*",
                             "Condition": {"StringEquals": {"aws:ResourceTag/name": ["x", "y"]}}}]}
    assert allowed(policy, "iam:DeleteAccessKey", "arn:aws:iam::1:user/a-1", {"aws:resourcetag/name": "y"})
    assert not allowed(policy, "iam:DeleteAccessKey", "arn:aws:iam::1:user/a-1", {"aws:ResourceTag/name": "z"})
    assert not allowed(policy, "iam:DeleteAccessKey", "arn:aws:iam::1:user/a-1")  # no such tag: denied
    assert not allowed(policy, "iam:DeleteAccessKey", "arn:aws:iam::1:user/b-1", {"aws:ResourceTag/name": "x"})
    assert not allowed(policy, "iam:DeleteUser", "arn:aws:iam::1:user/a-1", {"aws:ResourceTag/name": "x"})


@pytest.mark.parametrize("name", POLICIES)
def test_evaluator_knows_every_condition_the_policy_uses(name):
    for statement in POLICIES[name]["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement.get("Condition", {})) <= set(CONDITION_OPERATORS)


# What the code may call when bot keys go to the service's table: everything declared but the Secrets
# Manager store's own operations (bot-keys declares that store's, whichever is configured) and migrate-store's.
DECLARED_WITH_DB_STORE = set(
    aws_module.PERMISSIONS + capacity.PERMISSIONS + restore.PERMISSIONS
    + tuple(p for job in REGISTRY for p in job.permissions if job.name != "bot-keys" or p not in SecretsManagerStore.permissions)
)
EXPECTED_GRANTS = {"static": DECLARED, "rendered": DECLARED, "rendered-db": DECLARED_WITH_DB_STORE,
                   "rendered-db-migration": DECLARED_WITH_DB_STORE | set(migrate.PERMISSIONS)}


@pytest.mark.parametrize("name", POLICIES)
def test_policy_grants_exactly_what_the_code_declares(name):
    granted = {a for s in POLICIES[name]["Statement"] for a in _listed(s["Action"])}
    assert granted == EXPECTED_GRANTS[name]


def test_db_store_policy_lacks_only_the_secrets_manager_stores_operations():
    assert DECLARED - DECLARED_WITH_DB_STORE == {
        "secretsmanager:GetSecretValue", "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage"}


@pytest.mark.parametrize("name", POLICIES)
def test_star_only_where_aws_requires_it(name):
    for statement in POLICIES[name]["Statement"]:
        if "*" in _listed(statement["Resource"]):
            assert set(_listed(statement["Action"])) <= RESOURCELESS, statement["Action"]
    for action in RESOURCELESS:
        assert allowed(POLICIES[name], action, "*")


def test_static_policy_scoped_to_gen3wf_users_and_secrets_to_our_prefixes():
    ours = {"aws:ResourceTag/name": "gen3wf-h"}
    assert allowed(STATIC, "iam:DeleteAccessKey", user_arn("gen3wf-h-1"), ours)
    assert not allowed(STATIC, "iam:DeleteAccessKey", user_arn("gen3wf-h-1"))  # untagged: not the service's
    assert not allowed(STATIC, "iam:DeleteAccessKey", user_arn("gen3wf-rotator-ci"))
    assert not allowed(STATIC, "iam:DeleteAccessKey", user_arn("ci-deployer"), ours)
    assert not allowed(STATIC, "iam:CreateAccessKey", user_arn("gen3wf-h-1"), ours)  # end users never get keys
    assert allowed(STATIC, "iam:CreateAccessKey", user_arn("gen3wf-h-1-bot"), ours)
    assert not allowed(STATIC, "iam:CreateAccessKey", user_arn("admin"))
    assert allowed(STATIC, "secretsmanager:DeleteSecret", secret_arn("tower-abc/TOKEN"))
    assert not allowed(STATIC, "secretsmanager:DeleteSecret", secret_arn("prod/db"))
    assert not allowed(STATIC, "secretsmanager:DeleteSecret", secret_arn("gen3wf-rotator/h/bot-keys/x"))
    assert not allowed(STATIC, "secretsmanager:GetSecretValue", secret_arn("tower-abc/TOKEN"))


# --- the rendered policy: this deployment only ------------------------------------------------

END_USER, BOT = iam_user_name(HOST, "1"), bot_user_name(HOST, "1")
STORE = f"gen3wf-rotator/{HOST}/bot-keys/{BOT}"


def test_rendered_policy_allows_this_deployments_users_and_store():
    for action in ("iam:ListAccessKeys", "iam:DeleteAccessKey"):
        assert allowed(RENDERED, action, user_arn(END_USER), owned())
        assert allowed(RENDERED, action, user_arn(BOT), owned())
    assert allowed(RENDERED, "iam:CreateAccessKey", user_arn(BOT), owned())
    for action in ("secretsmanager:GetSecretValue", "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                   "secretsmanager:UpdateSecretVersionStage"):
        assert allowed(RENDERED, action, secret_arn(STORE))
    assert allowed(RENDERED, "secretsmanager:DeleteSecret", secret_arn("tower-abc/TOKEN"))


def test_db_store_policy_denies_the_secrets_manager_store_and_keeps_the_rest():
    for action in ("secretsmanager:GetSecretValue", "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                   "secretsmanager:UpdateSecretVersionStage", "secretsmanager:TagResource", "secretsmanager:DeleteSecret"):
        assert not allowed(RENDERED_DB, action, secret_arn(STORE)), action
    for action in ("iam:ListAccessKeys", "iam:DeleteAccessKey", "iam:CreateAccessKey"):
        assert allowed(RENDERED_DB, action, user_arn(BOT), owned())
        assert not allowed(RENDERED_DB, action, user_arn(BOT), owned("other.example.org"))
    assert not allowed(RENDERED_DB, "iam:CreateAccessKey", user_arn(END_USER), owned())
    for action in ("secretsmanager:DescribeSecret", "secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret"):
        assert allowed(RENDERED_DB, action, secret_arn("tower-abc/TOKEN"))  # run-secrets: unchanged
    # the migration statement reads and schedules for deletion this deployment's old store, nothing else
    for action in ("secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"):
        assert allowed(RENDERED_DB_MIGRATION, action, secret_arn(STORE))
        assert not allowed(RENDERED_DB_MIGRATION, action, secret_arn(STORE, region="eu-west-1"))
        assert not allowed(RENDERED_DB_MIGRATION, action, secret_arn(f"gen3wf-rotator/other.example.org/bot-keys/{BOT}"))
    assert not allowed(RENDERED_DB_MIGRATION, "secretsmanager:PutSecretValue", secret_arn(STORE))


def test_rendered_policy_denies_key_creation_for_an_end_user():
    assert not allowed(RENDERED, "iam:CreateAccessKey", user_arn(END_USER), owned())


def test_rendered_policy_denies_another_hostnames_users():
    other = "other.example.org"
    for action in ("iam:ListAccessKeys", "iam:DeleteAccessKey", "iam:CreateAccessKey"):
        assert not allowed(RENDERED, action, user_arn(bot_user_name(other, "1")), owned(other)), action
        # named like ours, tagged as another deployment's (the tag, not the name, makes a user ours)
        assert not allowed(RENDERED, action, user_arn(BOT), owned(other)), action
        assert not allowed(RENDERED, action, user_arn(BOT)), action  # no tag at all
        assert not allowed(RENDERED, action, user_arn(BOT, account="210987654321"), owned()), action


def test_rendered_policy_follows_the_tag_past_a_cut_name():
    """A long hostname is cut in user names but never in the tag: the user is still ours."""
    host = "a-very-long-gen3-commons-hostname.data-commons.example.org"
    policy = rendered_policy(hostname=host)
    bot = bot_user_name(host, "12345")
    assert not bot.startswith(owner_tag_value(host))  # the name is cut
    assert allowed(policy, "iam:CreateAccessKey", user_arn(bot), owned(host))
    assert not allowed(policy, "iam:CreateAccessKey", user_arn(bot), owned(HOST))


def test_rendered_policy_denies_another_deployments_store():
    for name in ("gen3wf-rotator/other.example.org/bot-keys/gen3wf-other-example-org-1-bot",
                 f"gen3wf-rotator/{HOST}.evil/bot-keys/x", f"gen3wf-rotator/{HOST}/elsewhere/x", "prod/db"):
        for action in ("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:CreateSecret"):
            assert not allowed(RENDERED, action, secret_arn(name)), (action, name)
    assert not allowed(RENDERED, "secretsmanager:DeleteSecret", secret_arn(STORE))  # run-secrets' rights stop at tower-*


def test_rendered_policy_denies_another_regions_and_accounts_secrets():
    assert not allowed(RENDERED, "secretsmanager:DeleteSecret", secret_arn("tower-abc/TOKEN", region="eu-west-1"))
    assert not allowed(RENDERED, "secretsmanager:DeleteSecret", secret_arn("tower-abc/TOKEN", account="210987654321"))
    assert not allowed(RENDERED, "secretsmanager:GetSecretValue", secret_arn(STORE, region="eu-west-1"))


def test_rendered_policy_covers_the_configured_run_secret_regions_and_store_prefix():
    policy = rendered_policy(runSecrets={"regions": ["us-east-1", "us-west-2"]}, botKeys={"secretPrefix": "ops/rotator/"})
    assert allowed(policy, "secretsmanager:DeleteSecret", secret_arn("tower-abc/TOKEN", region="us-west-2"))
    assert not allowed(policy, "secretsmanager:DeleteSecret", secret_arn("tower-abc/TOKEN", region="eu-west-1"))
    assert allowed(policy, "secretsmanager:PutSecretValue", secret_arn(f"ops/rotator/{BOT}"))
    assert not allowed(policy, "secretsmanager:PutSecretValue", secret_arn(STORE))


def test_rendered_policy_without_region_or_account_is_scoped_by_name_and_tag_only():
    policy = rendered_policy(aws={"region": ""}, allowedAccountIds=[])
    assert allowed(policy, "secretsmanager:DeleteSecret", secret_arn("tower-abc/TOKEN", region="eu-west-1"))
    assert allowed(policy, "iam:CreateAccessKey", user_arn(BOT, account="210987654321"), owned())
    assert not allowed(policy, "iam:CreateAccessKey", user_arn(END_USER), owned())


@pytest.mark.parametrize(
    "patterns",
    [
        ["^tower-(?P<run_id>[A-Za-z0-9]{1,16})/[A-Za-z_][A-Za-z0-9_]*$"],
        ["^towers?-(?P<run_id>[a-z0-9]+)/x$", "^nf_(?P<run_id>[a-z0-9]+)-{0,2}/x$"],
        ["^tes-(?P<run_id>[a-z0-9]{20})/[A-Z]+$|^funnel+(?P<run_id2>x)"],
        ["^(?:tower|nf)-(?P<run_id>[a-z0-9]+)/x$", "run-(?P<run_id>[a-z0-9]+)$"],
    ],
)
def test_rendered_run_secret_prefixes_never_allow_less_than_rotator_lists(patterns):
    """Each literal prefix rotator lists run secrets by (secret_inventory.pattern_prefixes) lies
    under a prefix the rendered policy allows."""
    policy = rendered_policy(runSecrets={"patterns": patterns})
    (statement,) = [s for s in policy["Statement"] if s["Sid"] == "RunSecrets"]
    allowed_prefixes = [r.split(":secret:", 1)[1].removesuffix("*") for r in statement["Resource"]]
    for pattern in patterns:
        for prefix in pattern_prefixes(pattern):
            assert any(prefix.startswith(p) for p in allowed_prefixes), (prefix, allowed_prefixes)
    if patterns == ["^tower-(?P<run_id>[A-Za-z0-9]{1,16})/[A-Za-z_][A-Za-z0-9_]*$"]:
        assert allowed_prefixes == ["tower-"]


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
    """Run every job (and restore) with apply against moto and check each call, on its resource and
    with the tags moto holds for it, against both policies."""
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
    assert {"iam:DeleteAccessKey", "iam:CreateAccessKey", "secretsmanager:CreateSecret",
            "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:DeleteSecret", "secretsmanager:RemoveRegionsFromReplication", "secretsmanager:RestoreSecret"} <= operations
    assert_every_call_allowed(iam, list(recorded), ("static", "rendered"))  # the policies with the store this run used


def assert_every_call_allowed(iam, calls: list[tuple[str, str]], policies) -> None:
    """Each recorded call is declared and allowed on its resource, with the user's tags as moto holds them."""
    # The context AWS would evaluate the tag conditions in.
    tags = {
        resource: {f"aws:ResourceTag/{tag['Key']}": tag["Value"] for tag in iam.list_user_tags(UserName=resource.rsplit("/", 1)[1])["Tags"]}
        for resource in {r for _, r in calls if ":user/" in r}
    }
    assert {context.get(OWNER_KEY) for context in tags.values()} == {TAG}
    for action, resource in calls:
        assert action in DECLARED, f"{action} is called but not declared"
        for name in policies:
            assert allowed(POLICIES[name], action, resource, tags.get(resource)), f"the {name} policy does not allow {action} on {resource}"


FERNET_KEY = Fernet.generate_key().decode()


@pytest.fixture
def db_store(postgres_server, tmp_path, monkeypatch):
    """gen3-workflow's database (the migration's column type), emptied; its settings as the chart passes them."""
    database = pg.database("timestamp")
    database.reset()
    server = database.server
    password, key = tmp_path / "password", tmp_path / "encryption-key"
    password.write_text(database.password + "\n")
    key.write_text(FERNET_KEY + "\n")
    for name, value in {"HOST": server.host, "PORT": str(server.port), "USER": pg.SUPERUSER, "DATABASE": database.dbname,
                        "PASSWORD_FILE": str(password), "ENCRYPTION_KEY_FILE": str(key)}.items():
        monkeypatch.setenv(f"ROTATOR_BOT_KEYS__DB__{name}", value)
    store = Gen3WorkflowDbStore(conninfo=database.conninfo, encryption_key=FERNET_KEY, hostname=HOST)
    yield store
    store.close()


def test_every_call_of_a_full_run_with_the_db_store_is_allowed_by_the_policy_without_the_store(aws, db_store, monkeypatch, recorded):
    """bot-keys writing to gen3-workflow's table calls no Secrets Manager store operation: the policy the chart
    renders for that store (no BotKeyStore statement) allows every call of a full run."""
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_ALLOWED_ACCOUNT_IDS", '["123456789012"]')
    monkeypatch.setenv("ROTATOR_BOT_KEYS__STORE", "gen3workflow-db")
    settings = load_settings()
    iam = aws.client("iam")
    now = utcnow()  # no frozen clock: psycopg_pool's threads need real time
    for name in (iam_user_name(HOST, "1"), bot_user_name(HOST, "1"), bot_user_name(HOST, "2")):
        make_user(iam, name, TAG)
    make_key(iam, iam_user_name(HOST, "1"), created=now - days(40))
    db_store.add(make_key(iam, bot_user_name(HOST, "1"), created=now - days(40)))  # expired: rotated
    db_store.add(NewKey(bot_user_name(HOST, "1"), "AKIAGONEGONEGONEGONE", now - days(3), "s"))  # not in IAM: forgotten
    aws.client("secretsmanager").create_secret(Name="tower-run1/TOKEN", SecretString="v")
    recorded.clear()
    result = Runner(settings, aws=aws).run(["user-keys", "bot-keys", "run-secrets"], dry_run=False)
    assert result.exit_code == 0, [job.outcomes for job in result.jobs]
    operations = {action for action, _ in recorded}
    assert {"iam:DeleteAccessKey", "iam:CreateAccessKey", "secretsmanager:ListSecrets"} <= operations
    store_arns = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gen3wf-rotator/"
    assert not any(resource.startswith(store_arns) for _, resource in recorded)  # the Secrets Manager store is never touched
    assert_every_call_allowed(iam, list(recorded), ("rendered-db",))
    assert len(db_store.stored_key_ids(bot_user_name(HOST, "2"))) == 2


def test_migrating_secrets_manager_to_the_db_store_needs_the_migration_statement(aws, db_store, recorded):
    """migrate-store --from secretsmanager --to gen3workflow-db --apply --delete-source: every call is allowed by the
    DB store's policy with iamPolicy.storeMigration, and reading the old store is denied without it."""
    iam, sm = aws.client("iam"), aws.client("secretsmanager")
    source = SecretsManagerStore(sm, prefix=f"gen3wf-rotator/{HOST}/bot-keys/")
    now = utcnow()
    make_user(iam, BOT, TAG)
    make_key(iam, BOT, created=now - days(16), store=source)
    make_key(iam, BOT, created=now - days(1), store=source)
    recorded.clear()
    results = migrate.migrate_store(source, db_store, users=None, apply=True, delete_source=True, iam=iam)
    assert {r.outcome for r in results} == {"done"} and {r.action for r in results} == {migrate.COPY_KEY, migrate.DELETE_SOURCE}
    calls = list(recorded)
    assert {"secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"} <= {action for action, _ in calls}
    assert_every_call_allowed(iam, calls, ("rendered-db-migration",))
    denied = {action for action, resource in calls if not allowed(RENDERED_DB, action, resource, owned())}
    assert denied == {"secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"}
