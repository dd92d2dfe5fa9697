"""The optional Slack failure notice (Gen3's habit): one secret-free line per failed or refused job."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from freezegun import freeze_time

from helpers import HOST, T0, TAG, days, make_key, make_user
from rotator import cli
from rotator.names import iam_user_name


class _Webhook(BaseHTTPRequestHandler):
    posts: list = []

    def do_POST(self):  # noqa: N802
        type(self).posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.posts = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "slack_webhook"
    secret.write_text(f"http://127.0.0.1:{server.server_port}/services/T000/B000/s3cr3tp4th\n")
    yield secret, _Webhook.posts
    server.shutdown()


def test_a_refused_run_posts_one_line_per_job_and_a_clean_run_posts_nothing(aws, monkeypatch, capsys, webhook):
    secret, posts = webhook
    iam = aws.client("iam")
    with freeze_time(T0):
        make_user(iam, iam_user_name(HOST, "1"), TAG)
        make_key(iam, iam_user_name(HOST, "1"), created=T0)
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_NOTIFY__SLACK_WEBHOOK_FILE", str(secret))
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETIONS", "0")
    with freeze_time(T0 + days(40)):
        assert cli.main(["run", "--job", "user-keys", "--apply", "--output", "json"]) == 3
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert posts == [{"text": f"JOBFAIL: rotator user-keys refused by a safety brake for {HOST} (run {run_id})"}]
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETIONS", "10")
    with freeze_time(T0 + days(40)):
        assert cli.main(["run", "--job", "user-keys", "--apply"]) == 0
    assert len(posts) == 1  # success: nothing posted
    assert "s3cr3tp4th" not in capsys.readouterr().err  # the webhook URL is a secret too
