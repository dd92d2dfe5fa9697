"""Secrets never leave the process: one regression test per leak found, and a canary test over every output."""

import base64
import json
import logging
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from freezegun import freeze_time
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from fake_status_api import FakeStatusApi
from helpers import ACCOUNT, HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator import cli
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.metrics import Metrics, push
from rotator.names import bot_user_name, iam_user_name
from rotator.runner import Runner
from rotator.settings import ConfigError, load_settings

CANARY_TOKEN = "canaryTOKEN0123456789abcdef"
CANARY_PASSWORD = "canaryPASSWORDxyz987"
CANARY_DB_PASSWORD = "canaryDBpassw0rd!"
CANARY_FERNET = "canaryFERNETkeyAAAAAAAAAAAAAAAAAAAAAAAAAAA="
CANARY_STORED = "canarySTOREDsecretAccessKey0000000000000"
CANARY_SECRET_VALUE = "canaryRUNSECRETvalue"


def run_cli(monkeypatch, capsys, *args, **env):
    capsys.readouterr()
    with monkeypatch.context() as m:
        for name, value in env.items():
            m.setenv(name, value)
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# --- tokens and passwords ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [f"{CANARY_TOKEN}\nsecond-line\n", f"Bearer {CANARY_TOKEN}", f"{CANARY_TOKEN}é"],
    ids=["two-lines", "inner-space", "not-latin-1"],
)
def test_a_bad_token_file_exits_2_naming_the_variable_never_the_value(monkeypatch, capsys, tmp_path, content):
    token_file = tmp_path / "token"
    token_file.write_text(content, encoding="utf-8")
    code, out, err = run_cli(
        monkeypatch, capsys, "plan", "--job", "run-secrets",
        ROTATOR_HOSTNAME=HOST, ROTATOR_RUN_SECRETS__STATUS_SOURCE="seqera",
        ROTATOR_RUN_SECRETS__SEQERA__URL="https://seqera.example.org/api", ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE=str(token_file),
    )
    assert code == 2 and "ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE" in err
    assert CANARY_TOKEN not in out + err


@pytest.mark.parametrize("token", [f"{CANARY_TOKEN}\n", f"{CANARY_TOKEN}\u00e9", f"a {CANARY_TOKEN}"])
def test_a_bad_token_variable_exits_2_without_the_value(monkeypatch, token):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__TOKEN", token)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "ROTATOR_RUN_SECRETS__TES__TOKEN" in str(info.value) and CANARY_TOKEN not in str(info.value)


def test_settings_never_hand_out_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__URL", "https://tes.example.org/ga4gh/tes/v1")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__USERNAME", "rotator")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__PASSWORD", CANARY_PASSWORD)
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__TOKEN", CANARY_TOKEN)
    settings = load_settings()
    for text in (repr(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert CANARY_PASSWORD not in text and CANARY_TOKEN not in text
    assert settings.run_secrets.tes.password_value() == CANARY_PASSWORD  # only on purpose


def test_tes_password_file_is_read_at_each_use(monkeypatch, tmp_path):
    password = tmp_path / "password"
    password.write_text("first-password\n")
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__USERNAME", "rotator")
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__TES__PASSWORD_FILE", str(password))
    settings = load_settings()
    assert settings.run_secrets.tes.password_value() == "first-password"
    password.write_text("rotated-password")
    assert settings.run_secrets.tes.password_value() == "rotated-password"


# --- the Gen3Workflow config file ------------------------------------------------------------


def test_malformed_gen3workflow_config_never_echoes_its_lines(monkeypatch, capsys, tmp_path):
    config = tmp_path / "gen3-workflow-config.yaml"
    config.write_text(f"HOSTNAME: {HOST}\nDB_PASSWORD: {CANARY_DB_PASSWORD}\nENCRYPTION_KEY: [{CANARY_FERNET}\n")
    code, out, err = run_cli(monkeypatch, capsys, "plan", ROTATOR_GEN3WORKFLOW_CONFIG=str(config))
    assert code == 2 and "is not valid YAML at line" in err
    assert CANARY_DB_PASSWORD not in out + err and CANARY_FERNET not in out + err


# --- logs ----------------------------------------------------------------------------------


def test_stdlib_debug_logging_never_prints_aws_bodies(aws, monkeypatch, capsys):
    """A process that turns the root logger to DEBUG still never prints CreateAccessKey's or GetSecretValue's bodies."""
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_LOG__LEVEL", "debug")
    settings = load_settings()
    from rotator import logs

    logs.configure(format="json", level="debug")
    root = logging.getLogger()
    old_level, handler = root.level, logging.StreamHandler()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        iam = aws.client("iam")
        make_user(iam, bot_user_name(HOST, "1"), TAG)
        store = SecretsManagerStore(aws.client("secretsmanager"), prefix=settings.bot_secret_prefix)
        with freeze_time(T0):
            make_key(iam, bot_user_name(HOST, "1"), created=T0, store=store)
        result = Runner(settings, aws=aws).run(["bot-keys"], dry_run=False)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        logs.configure()
    assert result.exit_code == 0
    out, err = capsys.readouterr()
    value = aws.client("secretsmanager").get_secret_value(SecretId=settings.bot_secret_prefix + bot_user_name(HOST, "1"), VersionStage="AWSCURRENT")
    for entry in json.loads(value["SecretString"]):
        assert entry["secret_access_key"] not in out + err


# --- the Pushgateway -------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: list = []

    def do_PUT(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, _Recorder
    server.shutdown()


def test_pushgateway_basic_auth_and_urls_without_userinfo(gateway, log_output):
    port, recorder = gateway
    metrics = Metrics(CollectorRegistry())
    assert push(metrics, url=f"http://127.0.0.1:{port}", hostname=HOST, jobs=["user-keys"], username="rotator", password=CANARY_PASSWORD)
    expected = "Basic " + base64.b64encode(f"rotator:{CANARY_PASSWORD}".encode()).decode()
    assert recorder.seen and all(auth == expected for _, auth in recorder.seen)
    assert push(metrics, url=f"http://rotator:{CANARY_PASSWORD}@127.0.0.1:{port}", hostname=HOST, jobs=[])
    assert recorder.seen[-1][1] == expected  # userinfo in the URL works too...
    logged = log_output.getvalue()
    assert CANARY_PASSWORD not in logged and f"http://127.0.0.1:{port}" in logged  # ...and is never logged


def test_pushgateway_auth_needs_both_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_METRICS__PUSHGATEWAY_USERNAME", "rotator")
    with pytest.raises(ConfigError, match="PUSHGATEWAY_USERNAME and __PASSWORD_FILE"):
        load_settings()


# --- serve's HTTP endpoints -------------------------------------------------------------------


def _service(aws, monkeypatch, **env):
    from rotator.serve import Service

    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Service(load_settings(), aws=aws, metrics=Metrics(CollectorRegistry()))


def test_serve_header_names_no_version_and_idle_connections_are_closed(aws, monkeypatch):
    import rotator.serve as serve_module

    monkeypatch.setattr(serve_module, "CONNECTION_TIMEOUT_SECONDS", 0.5)
    service = _service(aws, monkeypatch, ROTATOR_METRICS__BIND_ADDRESS="127.0.0.1")
    port = service.start_http(port=0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.headers["Server"] == "rotator"
        idle = socket.create_connection(("127.0.0.1", port))
        idle.settimeout(5)
        started = time.monotonic()
        assert idle.recv(1) == b""  # the server hung up on a client that sent nothing
        assert time.monotonic() - started < 4
        idle.close()
    finally:
        service._stop_http()


def test_serve_binds_ipv6(aws, monkeypatch):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    service = _service(aws, monkeypatch, ROTATOR_METRICS__BIND_ADDRESS="::1")
    try:
        port = service.start_http(port=0)
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/healthz", timeout=5) as response:
            assert response.status in (200, 503)
    except urllib.error.HTTPError as exc:
        assert exc.code == 503  # no scheduler in this test: alive only once it runs
    finally:
        service._stop_http()


# --- run secrets by ARN ------------------------------------------------------------------------


def test_a_run_secret_recreated_under_the_same_name_is_not_deleted(aws, monkeypatch):
    from moto.secretsmanager.models import secretsmanager_backends

    from rotator.jobs import get_job
    from rotator.jobs.base import RunContext

    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    settings = load_settings()
    sm = aws.client("secretsmanager")
    backend = secretsmanager_backends[ACCOUNT]["us-east-1"]
    sm.create_secret(Name="tower-abc/TOKEN", SecretString="old")
    backend.secrets["tower-abc/TOKEN"].created_date = int((T0 - days(45)).timestamp())
    job = get_job("run-secrets")
    ctx = RunContext(settings=settings, aws=aws, now=T0, clock=lambda: T0)
    job.prepare(ctx)
    plan = job.plan(job.observe(ctx), now=T0, settings=settings)
    assert [a.target for a in plan.actions] == ["tower-abc/TOKEN"]
    # between planning and deleting, the secret is replaced by a new one of the same name
    sm.delete_secret(SecretId="tower-abc/TOKEN", ForceDeleteWithoutRecovery=True)
    new_arn = sm.create_secret(Name="tower-abc/TOKEN", SecretString="new")["ARN"]
    outcomes = list(job.execute(plan, ctx))
    assert [o.result for o in outcomes] == ["done"]  # the old one is gone: done
    assert "DeletedDate" not in sm.describe_secret(SecretId=new_arn)  # the new one is untouched


# --- the canary: every output of every job and failure mode ----------------------------------------


def test_no_canary_in_any_output(aws, monkeypatch, capsys, tmp_path, gateway):
    """Plant distinctive secrets everywhere, run every job and failure mode, grep everything."""
    from moto.secretsmanager.models import secretsmanager_backends

    port, _ = gateway
    api = FakeStatusApi(token=CANARY_TOKEN).start()
    try:
        api.seqera.update(abc="SUCCEEDED", echo=f"Bearer {CANARY_TOKEN}")
        iam, sm = aws.client("iam"), aws.client("secretsmanager")
        settings_env = dict(
            ROTATOR_HOSTNAME=HOST,
            ROTATOR_RUN_SECRETS__STATUS_SOURCE="seqera",
            ROTATOR_RUN_SECRETS__SEQERA__URL=api.seqera_url,
            ROTATOR_SAFETY__MAX_DELETION_FRACTION="1",
        )
        token_file = tmp_path / "token"
        token_file.write_text(CANARY_TOKEN + "\n")
        password_file = tmp_path / "pgw-password"
        password_file.write_text(CANARY_PASSWORD)
        config = tmp_path / "gen3-workflow-config.yaml"
        config.write_text(f"HOSTNAME: {HOST}\nDB_PASSWORD: {CANARY_DB_PASSWORD}\nENCRYPTION_KEY: {CANARY_FERNET}\n")
        settings_env.update(
            ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE=str(token_file),
            ROTATOR_GEN3WORKFLOW_CONFIG=str(config),
            ROTATOR_METRICS__PUSHGATEWAY_URL=f"http://127.0.0.1:{port}",
            ROTATOR_METRICS__PUSHGATEWAY_USERNAME="rotator",
            ROTATOR_METRICS__PUSHGATEWAY_PASSWORD_FILE=str(password_file),
        )
        prefix = f"gen3wf-rotator/{HOST}/bot-keys/"
        store = SecretsManagerStore(sm, prefix=prefix)
        with freeze_time(T0):
            for n in ("1", "2", "3"):
                make_user(iam, iam_user_name(HOST, n), TAG)
                make_user(iam, bot_user_name(HOST, n), TAG)
                make_key(iam, iam_user_name(HOST, n), created=T0 - days(40))
            make_key(iam, bot_user_name(HOST, "1"), created=T0 - days(20), store=store)
            # a store entry with a canary secret, and a store value that fails validation (and holds a canary)
            from rotator.model import NewKey

            store.add(NewKey(bot_user_name(HOST, "2"), "AKIACANARYCANARY0001", T0 - days(1), CANARY_STORED))
            sm.create_secret(Name=prefix + bot_user_name(HOST, "3"), SecretString=json.dumps([{"access_key_id": None, "secret_access_key": CANARY_STORED}]))
            for run_id in ("abc", "echo"):
                sm.create_secret(Name=f"tower-{run_id}/TOKEN", SecretString=CANARY_SECRET_VALUE)
                secretsmanager_backends[ACCOUNT]["us-east-1"].secrets[f"tower-{run_id}/TOKEN"].created_date = int((T0 - days(2)).timestamp())
        for name, value in settings_env.items():
            monkeypatch.setenv(name, value)
        outputs = []
        with freeze_time(T0):
            for log_format in ("json", "console"):
                for args in (("plan", "--output", "json"), ("run", "--apply"), ("run", "--apply", "--output", "json")):
                    code, out, err = run_cli(monkeypatch, capsys, *args, ROTATOR_LOG__FORMAT=log_format, **settings_env)
                    assert code in (0, 1), err
                    outputs += [out, err]
        # a later run, when keys rotate and the store is written again
        with freeze_time(T0 + days(20)):
            code, out, err = run_cli(monkeypatch, capsys, "run", "--apply", "--output", "json", **settings_env)
            outputs += [out, err]
        metrics = Metrics(CollectorRegistry())
        metrics.instrument(aws)
        with freeze_time(T0 + days(40)):
            metrics.record_run(Runner(load_settings(), aws=aws).run(["user-keys", "bot-keys"], dry_run=True), settings=load_settings())
        outputs.append(generate_latest(metrics.registry).decode())
    finally:
        api.stop()
    stored_values = []
    for page in sm.get_paginator("list_secrets").paginate():
        for s in page["SecretList"]:
            if s["Name"].startswith(prefix):
                value = sm.get_secret_value(SecretId=s["ARN"], VersionStage="AWSCURRENT")["SecretString"]
                stored_values += [e.get("secret_access_key") for e in json.loads(value) if isinstance(e, dict)]
    canaries = [CANARY_TOKEN, CANARY_PASSWORD, CANARY_DB_PASSWORD, CANARY_FERNET, CANARY_STORED, CANARY_SECRET_VALUE]
    canaries += [v for v in stored_values if v]
    text = "\n".join(outputs)
    assert len(text) > 10_000  # the runs really said things
    for canary in canaries:
        assert canary not in text, "a secret leaked"
    assert len(key_ids(iam, bot_user_name(HOST, "3"))) == 0  # the unreadable store's bot was left alone
