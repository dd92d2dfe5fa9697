"""`rotator serve` and `rotator run` as processes, watched by a real Prometheus and Pushgateway."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3
import pytest

from conftest import require_binary
from fake_status_api import FakeStatusApi
from helpers import HOST, TAG, days, make_key, make_user
from rotator.demo import moto_server
from rotator.names import bot_user_name, iam_user_name
from rotator.runner import utcnow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except (urllib.error.URLError, ConnectionError) as exc:
        return getattr(exc, "code", 0), ""


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture
def iam(endpoint):
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()
    return boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def account(iam):
    now = utcnow()
    make_user(iam, iam_user_name(HOST, "1"), TAG)
    make_user(iam, bot_user_name(HOST, "1"), TAG)
    make_key(iam, iam_user_name(HOST, "1"), created=now - days(45))
    make_key(iam, iam_user_name(HOST, "1"), created=now - days(10))
    return iam


def environment(endpoint, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AWS_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
        ROTATOR_HOSTNAME=HOST,
    )
    env.update(extra)
    return env


class Proc:
    def __init__(self, args, env, log_path):
        self.log = open(log_path, "w+")
        self.p = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
        self.log.close()


@pytest.fixture
def procs():
    started = []
    yield lambda *a: started.append(Proc(*a)) or started[-1]
    for proc in reversed(started):
        proc.stop()


def test_serve_scraped_by_a_real_prometheus(endpoint, account, procs, tmp_path):
    prometheus = require_binary("prometheus")
    port, prom_port = free_port(), free_port()
    serve = procs(
        [sys.executable, "-m", "rotator", "serve"],
        environment(endpoint, ROTATOR_METRICS__PORT=str(port), ROTATOR_SCHEDULE__RUN_ON_START="true",
                    ROTATOR_DRY_RUN="false", ROTATOR_SCHEDULE__RUN_SECRETS=""),
        tmp_path / "serve.log",
    )
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, what="readyz")
    assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200

    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: rotator\n"
        "    honor_labels: true  # our own `job` label names the rotator job\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    procs(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        os.environ.copy(),
        tmp_path / "prometheus.log",
    )

    def query(expr):
        status, body = http_get(f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return json.loads(body)["data"]["result"] if status == 200 else []

    runs = wait_for(lambda: query('rotator_job_runs_total{job="user-keys",outcome="success"}'), timeout=60, what="scraped runs")
    assert float(runs[0]["value"][1]) == 1
    ages = wait_for(lambda: query('rotator_access_key_oldest_age_seconds{kind="user"}'), timeout=30, what="key age")
    assert 9 * 86400 < float(ages[0]["value"][1]) < 11 * 86400  # the 45-day key was deleted; the 10-day one is the oldest
    assert wait_for(lambda: query('rotator_access_keys{kind="bot",state="live"} == 2'), timeout=30, what="bot keys")
    assert "serve.ready" in serve.output()


def test_sigterm_lets_the_running_job_finish(endpoint, iam, procs, tmp_path):
    api = FakeStatusApi().start()
    try:
        sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
        sm.create_secret(Name="tower-slow1/TOKEN", SecretString="v")
        from moto.secretsmanager.models import secretsmanager_backends

        secretsmanager_backends["123456789012"]["us-east-1"].secrets["tower-slow1/TOKEN"].created_date = int(time.time()) - 7200
        api.seqera["slow1"] = "SUCCEEDED"
        api.delay["slow1"] = 2.0
        port = free_port()
        serve = procs(
            [sys.executable, "-m", "rotator", "serve"],
            environment(
                endpoint, ROTATOR_METRICS__PORT=str(port), ROTATOR_SCHEDULE__RUN_ON_START="true", ROTATOR_DRY_RUN="false",
                ROTATOR_SCHEDULE__USER_KEYS="", ROTATOR_SCHEDULE__BOT_KEYS="",
                ROTATOR_RUN_SECRETS__STATUS_SOURCE="seqera", ROTATOR_RUN_SECRETS__SEQERA__URL=api.seqera_url,
                ROTATOR_RUN_SECRETS__SEQERA__TOKEN=api.token,
            ),
            tmp_path / "serve.log",
        )
        wait_for(lambda: api.requests, timeout=60, what="the job to start")
        serve.p.send_signal(signal.SIGTERM)
        assert serve.p.wait(60) == 0
        out = serve.output()
        assert out.index("serve.stopping") < out.index('"job.finished"') < out.index("serve.stopped")
        assert "DeletedDate" in sm.describe_secret(SecretId="tower-slow1/TOKEN")  # the job did complete
        assert api.token not in out
    finally:
        api.stop()


def test_invalid_crontab_exits_2(endpoint):
    proc = subprocess.run(
        [sys.executable, "-m", "rotator", "serve"], env=environment(endpoint, ROTATOR_SCHEDULE__USER_KEYS="0 3 * *"),
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "ROTATOR_SCHEDULE__USER_KEYS" in proc.stderr


def test_one_shot_run_pushes_to_a_real_pushgateway(endpoint, account, procs, tmp_path):
    pushgateway = require_binary("prometheus-pushgateway")
    port = free_port()
    procs([pushgateway, f"--web.listen-address=127.0.0.1:{port}"], os.environ.copy(), tmp_path / "pg.log")
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, what="pushgateway")
    proc = subprocess.run(
        [sys.executable, "-m", "rotator", "run", "--apply", "--job", "user-keys", "--job", "bot-keys"],
        env=environment(endpoint, ROTATOR_METRICS__PUSHGATEWAY_URL=f"http://127.0.0.1:{port}"),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "metrics.pushed" in proc.stderr
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    lines = body.splitlines()
    assert f'rotator_job_runs_total{{hostname="{HOST}",instance="",job="user-keys",outcome="success"}} 1' in lines
    assert f'rotator_job_runs_total{{hostname="{HOST}",instance="",job="bot-keys",outcome="success"}} 1' in lines
    assert any(line.startswith("rotator_build_info{") and 'job="rotator"' in line for line in lines)
    assert any(line.startswith("rotator_aws_api_calls_total{") and 'job="rotator"' in line for line in lines)
    # every series is pushed once: no job's series leak into another job's group
    assert not any('job="user-keys"' in line and "rotator_bot_users_unhealthy" in line for line in lines)


def test_failed_push_does_not_change_the_exit_code(endpoint, account):
    proc = subprocess.run(
        [sys.executable, "-m", "rotator", "run", "--job", "user-keys"],
        env=environment(endpoint, ROTATOR_METRICS__PUSHGATEWAY_URL=f"http://127.0.0.1:{free_port()}"),
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0
    assert "metrics.push_failed" in proc.stderr
