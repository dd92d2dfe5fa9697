"""The command line against a moto server over real HTTP (AWS_ENDPOINT_URL).

In process (``cli.main([...])``, as the console script calls it) for speed; the first test
and the demo run ``python -m rotator`` as a subprocess, as an operator would.
"""

import json
import os
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from helpers import HOST, TAG, days, key_ids, make_key, make_user
from rotator.demo import moto_server
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.names import bot_user_name, iam_user_name, owner_tag_value
from rotator.runner import utcnow

PREFIX = f"gen3wf-rotator/{HOST}/bot-keys/"


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def clients(endpoint):
    session = boto3.session.Session(region_name="us-east-1")
    return {s: session.client(s, endpoint_url=endpoint) for s in ("iam", "secretsmanager")}


@pytest.fixture
def iam(endpoint, clients):
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
    return clients["iam"]


@pytest.fixture
def store(clients):
    return SecretsManagerStore(clients["secretsmanager"], prefix=PREFIX)


def _environment(endpoint, env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AWS_"))}
    environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        ROTATOR_HOSTNAME=HOST,
    )
    environ.update(env)
    return environ


def rotator_process(*args, endpoint, **env):
    return subprocess.run(
        [sys.executable, "-m", "rotator", *args], env=_environment(endpoint, env), capture_output=True, text=True, timeout=120
    )


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def rotator(monkeypatch, capsys):
    """``rotator ARGS`` in this process, with exactly the given environment; returns what a subprocess would."""
    from rotator import cli

    def run(*args, endpoint, **env):
        capsys.readouterr()
        with monkeypatch.context() as m:
            for name in list(os.environ):
                m.delenv(name)
            for name, value in _environment(endpoint, env).items():
                m.setenv(name, value)
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse: usage errors
                code = exc.code
        out, err = capsys.readouterr()
        return Completed(code, out, err)

    return run


@pytest.fixture
def seeded(iam, store):
    now = utcnow()
    make_user(iam, iam_user_name(HOST, "1"), TAG)
    make_user(iam, bot_user_name(HOST, "1"), TAG)
    make_user(iam, iam_user_name("other.example.org", "1"), owner_tag_value("other.example.org"))
    return {
        "expired": make_key(iam, iam_user_name(HOST, "1"), created=now - days(40)),
        "fresh": make_key(iam, iam_user_name(HOST, "1"), created=now - days(3)),
        "bot": make_key(iam, bot_user_name(HOST, "1"), created=now - days(2), store=store),
        "decoy": make_key(iam, iam_user_name("other.example.org", "1"), created=now - days(400)),
    }


def test_run_apply_exit_0_json(endpoint, iam, seeded):
    proc = rotator_process("run", "--apply", "--output", "json", endpoint=endpoint)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["dry_run"] is False and doc["exit_code"] == 0
    actions = [(a["job"], a["kind"], a["outcome"]) for j in doc["jobs"] for a in j["actions"]]
    assert actions == [("user-keys", "delete-key", "done"), ("bot-keys", "create-key", "done")]
    assert set(doc["jobs"][0]["actions"][0]) == {
        "job", "kind", "target", "reason", "outcome", "error", "reason_code", "user", "key_id", "age_days", "secret", "run_id",
    }
    deletion, creation = doc["jobs"][0]["actions"][0], doc["jobs"][1]["actions"][0]
    assert (deletion["reason_code"], deletion["user"], deletion["key_id"]) == ("expired", iam_user_name(HOST, "1"), seeded["expired"].key_id)
    assert deletion["age_days"] == 40 and creation["age_days"] is None
    assert creation["reason_code"] == "missing-key" and creation["created_key_id"] in key_ids(iam, bot_user_name(HOST, "1"))
    assert doc["run_id"] and doc["hostname"] == HOST and doc["account"] == "123456789012"
    assert all(json.loads(line).get("run_id") == doc["run_id"] for line in proc.stderr.splitlines())  # joins with the logs
    assert key_ids(iam, iam_user_name(HOST, "1")) == {seeded["fresh"].key_id}
    assert key_ids(iam, iam_user_name("other.example.org", "1")) == {seeded["decoy"].key_id}
    assert len(key_ids(iam, bot_user_name(HOST, "1"))) == 2
    # logs are JSON lines on stderr, one summary per job
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["job"] for e in events if e["event"] == "job.finished"] == ["user-keys", "bot-keys", "run-secrets"]
    # nothing secret anywhere
    value = json.loads(boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1").get_secret_value(SecretId=PREFIX + bot_user_name(HOST, "1"), VersionStage="AWSCURRENT")["SecretString"])
    for entry in value:
        assert entry["secret_access_key"] not in proc.stdout + proc.stderr


def test_run_without_apply_changes_nothing(endpoint, iam, seeded, rotator):
    proc = rotator("run", endpoint=endpoint)
    assert proc.returncode == 0, proc.stderr
    assert "dry-run: nothing was changed" in proc.stdout
    assert "expired: 40d > 30d" in proc.stdout
    assert seeded["expired"].key_id in key_ids(iam, iam_user_name(HOST, "1"))
    assert rotator("plan", "--job", "user-keys", endpoint=endpoint, ROTATOR_DRY_RUN="false").returncode == 0
    assert seeded["expired"].key_id in key_ids(iam, iam_user_name(HOST, "1"))  # plan never changes anything


def test_dry_run_false_applies(endpoint, iam, seeded, rotator):
    proc = rotator("run", "--job", "user-keys", endpoint=endpoint, ROTATOR_DRY_RUN="false")
    assert proc.returncode == 0, proc.stderr
    assert key_ids(iam, iam_user_name(HOST, "1")) == {seeded["fresh"].key_id}


def test_exit_1_when_something_failed(endpoint, iam, seeded, clients, rotator):
    bot = bot_user_name(HOST, "2")
    make_user(iam, bot, TAG)
    clients["secretsmanager"].create_secret(Name=PREFIX + bot, SecretString="not a key list")
    proc = rotator("run", "--apply", endpoint=endpoint)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "store unreadable" in proc.stdout
    assert key_ids(iam, bot) == set()  # left alone
    assert key_ids(iam, iam_user_name(HOST, "1")) == {seeded["fresh"].key_id}  # the rest went on


class _Counter(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(500)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def counting_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    _Counter.hits = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Counter
    server.shutdown()


@pytest.mark.parametrize(
    "env",
    [
        {"ROTATOR_USER_KEYS__LIFETIME_DAYS": "0"},
        {"ROTATOR_HOSTNAME": ""},
        {"ROTATOR_SAFETY__MAX_DELETION_FRACTION": "2"},
        {"ROTATOR_NOT_A_SETTING": "1"},
    ],
)
def test_exit_2_bad_config_before_any_aws_call(counting_endpoint, env, rotator):
    url, counter = counting_endpoint
    proc = rotator("run", "--apply", endpoint=url, **env)
    assert proc.returncode == 2
    assert next(iter(env)) in proc.stderr
    assert counter.hits == 0


def test_exit_2_usage(endpoint, rotator):
    assert rotator("run", "--job", "no-such-job", endpoint=endpoint).returncode == 2
    assert rotator("frobnicate", endpoint=endpoint).returncode == 2


def test_exit_2_wrong_account_touches_nothing(endpoint, iam, seeded, rotator):
    proc = rotator("run", "--apply", endpoint=endpoint, ROTATOR_ALLOWED_ACCOUNT_IDS='["111122223333"]')
    assert proc.returncode == 2
    assert "123456789012 is not in ROTATOR_ALLOWED_ACCOUNT_IDS" in proc.stderr
    assert seeded["expired"].key_id in key_ids(iam, iam_user_name(HOST, "1"))


def test_exit_3_brake_touches_nothing(endpoint, iam, seeded, rotator):
    proc = rotator("run", "--apply", endpoint=endpoint, ROTATOR_SAFETY__MAX_DELETIONS="0")
    assert proc.returncode == 3
    assert "REFUSED" in proc.stdout and "ROTATOR_SAFETY__MAX_DELETIONS" in proc.stdout
    assert "safety.brake_tripped" in proc.stderr
    assert seeded["expired"].key_id in key_ids(iam, iam_user_name(HOST, "1"))
    assert len(key_ids(iam, bot_user_name(HOST, "1"))) == 1


def test_console_log_format(endpoint, iam, seeded, rotator):
    proc = rotator("plan", endpoint=endpoint, ROTATOR_LOG__FORMAT="console")
    assert proc.returncode == 0
    assert "job.finished" in proc.stderr and not proc.stderr.lstrip().startswith("{")


def test_demo_runs_end_to_end():
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AWS_"))}
    environ["ROTATOR_DRY_RUN"] = "false"  # an operator's own setting: the demo says it ignores it
    proc = subprocess.run([sys.executable, "-m", "rotator", "demo"], env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("== the demo runs on its own settings: ignoring ROTATOR_DRY_RUN\n")
    seeded = proc.stdout.split("== rotator plan")[0]
    assert "IN SECRETS MANAGER" in seeded and "stored, handed out" in seeded  # the store column says what it means
    decoys = [line.split()[0] for line in seeded.splitlines() if line.endswith("decoy: never touched")]
    assert set(decoys) == {"ci-deployer", "gen3wf-demo-example-org", "gen3wf-demo-example-org-999", "gen3wf-other-example-org-101"}
    assert "== second run: nothing left to do" in proc.stdout
    second = proc.stdout.split("== second run: nothing left to do")[1]
    assert "nothing to do" in second
    for job in ("user-keys", "bot-keys", "run-secrets"):
        assert f"{job}: success" in second


@pytest.fixture
def status_api():
    from fake_status_api import FakeStatusApi

    fake = FakeStatusApi().start()
    yield fake
    fake.stop()


def _old_secret(clients, name):
    from moto.secretsmanager.models import secretsmanager_backends

    clients["secretsmanager"].create_secret(Name=name, SecretString="pipeline-secret-" + name)
    # moto stamps "now"; age the secret past the minimum age
    secretsmanager_backends["123456789012"]["us-east-1"].secrets[name].created_date = int(utcnow().timestamp()) - 3 * 3600


@pytest.mark.parametrize("source", ["seqera", "tes", "none"])
def test_run_secrets_with_each_source(endpoint, iam, clients, status_api, source, rotator):
    status_api.seqera.update(fin="SUCCEEDED", act="RUNNING")
    status_api.tes.update(fin="COMPLETE", act="RUNNING")
    prefix = "tes" if source == "tes" else "tower"  # TES task ids are not Seqera workflow ids: its own pattern
    for run_id in ("fin", "act"):
        _old_secret(clients, f"{prefix}-{run_id}/TOKEN")
    _old_secret(clients, "unrelated/secret")
    env = {"ROTATOR_RUN_SECRETS__STATUS_SOURCE": source}
    if source == "seqera":
        env.update(ROTATOR_RUN_SECRETS__SEQERA__URL=status_api.seqera_url, ROTATOR_RUN_SECRETS__SEQERA__TOKEN=status_api.token)
    if source == "tes":
        env.update(ROTATOR_RUN_SECRETS__TES__URL=status_api.tes_url, ROTATOR_RUN_SECRETS__TES__TOKEN=status_api.token)
        env.update(ROTATOR_RUN_SECRETS__PATTERNS=json.dumps([r"^tes-(?P<run_id>[\w-]+)/\w+$"]))

    plan = rotator("plan", "--job", "run-secrets", "--output", "json", endpoint=endpoint, **env)
    assert plan.returncode == 0, plan.stderr
    targets = [a["target"] for a in json.loads(plan.stdout)["jobs"][0]["actions"]]
    assert targets == ([] if source == "none" else [f"{prefix}-fin/TOKEN"])  # "none" waits for the max age

    applied = rotator("run", "--job", "run-secrets", "--apply", endpoint=endpoint, **env)
    assert applied.returncode == 0, applied.stderr
    listed = {s["Name"]: s for s in clients["secretsmanager"].list_secrets(IncludePlannedDeletion=True)["SecretList"]}
    assert ("DeletedDate" in listed[f"{prefix}-fin/TOKEN"]) is (source != "none")
    assert "DeletedDate" not in listed[f"{prefix}-act/TOKEN"] and "DeletedDate" not in listed["unrelated/secret"]
    output = plan.stdout + plan.stderr + applied.stdout + applied.stderr
    assert status_api.token not in output and "pipeline-secret-" not in output

    if source != "none":
        restored = rotator("restore-secrets", "--run", "fin", endpoint=endpoint)
        assert restored.returncode == 0, restored.stderr
        assert f"restored  {prefix}-fin/TOKEN" in restored.stdout
        assert "DeletedDate" not in clients["secretsmanager"].describe_secret(SecretId=f"{prefix}-fin/TOKEN")
    assert "nothing to restore" in rotator("restore-secrets", "--all", endpoint=endpoint).stdout


def test_restore_needs_a_choice(endpoint, rotator):
    assert rotator("restore-secrets", endpoint=endpoint).returncode == 2


def test_run_secrets_bad_source_config_exits_2(counting_endpoint, rotator):
    url, counter = counting_endpoint
    proc = rotator("run", endpoint=url, ROTATOR_RUN_SECRETS__STATUS_SOURCE="seqera")
    assert proc.returncode == 2 and "ROTATOR_RUN_SECRETS__SEQERA__URL" in proc.stderr
    assert counter.hits == 0
