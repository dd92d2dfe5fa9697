"""Rendering of a run for people (text) and programs (one JSON document), from hand-made results."""

import json
from datetime import UTC, datetime

from rotator.jobs._keys import KeyPlan
from rotator.jobs.run_secrets import RunSecretsPlan
from rotator.model import CREATE_KEY, DELETE_KEY, DELETE_SECRET, DONE, FAILED, Action, Outcome, Skipped
from rotator.report import render_json, render_text, to_document
from rotator.runner import JobResult, RunResult
from rotator.safety import Brake

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
EXPIRED = Action("user-keys", DELETE_KEY, "gen3wf-h-1/AKIA1", "expired: 34d > 30d", user="gen3wf-h-1", key_id="AKIA1")
CREATE = Action("bot-keys", CREATE_KEY, "gen3wf-h-1-bot", "1 of 2 live keys", user="gen3wf-h-1-bot")
SECRET = Action("run-secrets", DELETE_SECRET, "tower-abc/TOKEN", "run abc SUCCEEDED (seqera)", run_id="abc")
MALFORMED = Skipped("gen3wf-h", "tagged but the name does not follow the rule")


def result(*jobs, dry_run=False):
    return RunResult(now=NOW, dry_run=dry_run, account_id="123456789012", jobs=list(jobs))


def user_keys(**kw):
    plan = KeyPlan(job="user-keys", actions=(EXPIRED,), managed=4, skipped=(MALFORMED,), inventory_source="credential-report",
                   managed_users=2)
    return JobResult("user-keys", plan=plan, **kw)


def bot_keys(**kw):
    plan = KeyPlan(job="bot-keys", actions=(CREATE,), managed=1, skipped=(MALFORMED,), managed_users=1,
                   errors=("gen3wf-h-2-bot: store unreadable: ValueError",))
    return JobResult("bot-keys", plan=plan, **kw)


def run_secrets(**kw):
    plan = RunSecretsPlan(job="run-secrets", actions=(SECRET,), managed=3, states={"finished": 1, "active": 2},
                          inventory_source="list-secrets + seqera")
    return JobResult("run-secrets", plan=plan, **kw)


def test_json_document_shape_and_outcomes():
    run = result(
        user_keys(outcomes=(Outcome(EXPIRED, DONE),)),
        bot_keys(outcomes=(Outcome(CREATE, FAILED, "CreateAccessKey: ServiceFailure: boom"),)),
        run_secrets(outcomes=(Outcome(SECRET, DONE),)),
    )
    doc = json.loads(render_json(run, command="run"))
    assert doc["exit_code"] == 1 and doc["dry_run"] is False and doc["account_id"] == "123456789012"
    users, bots, secrets = doc["jobs"]
    assert users["outcome"] == "success" and users["managed_users"] == 2 and users["managed"] == 4
    assert users["actions"] == [{"job": "user-keys", "kind": "delete-key", "target": "gen3wf-h-1/AKIA1",
                                 "reason": "expired: 34d > 30d", "outcome": "done", "error": None,
                                 "reason_code": "", "user": "gen3wf-h-1", "key_id": "AKIA1", "secret": None, "run_id": None}]
    assert secrets["actions"][0]["secret"] == "tower-abc/TOKEN"
    assert bots["outcome"] == "failed" and bots["actions"][0]["error"].startswith("CreateAccessKey")
    assert bots["errors"] == ["gen3wf-h-2-bot: store unreadable: ValueError"]
    assert secrets["states"] == {"finished": 1, "active": 2} and secrets["managed_users"] is None
    assert secrets["summary"] == {"done": 1}


def test_refused_and_not_run_actions():
    brake = Brake("max_deletions", "user-keys: plan deletes 501, more than ROTATOR_SAFETY__MAX_DELETIONS=500; …")
    doc = to_document(result(user_keys(brake=brake), run_secrets()), command="run")
    assert doc["exit_code"] == 3
    assert [a["outcome"] for j in doc["jobs"] for a in j["actions"]] == ["refused", "not-run"]
    text = render_text(result(user_keys(brake=brake), run_secrets()), command="run")
    assert "REFUSED: user-keys: plan deletes 501" in text


def test_text_table_and_one_summary_line_per_job():
    text = render_text(result(user_keys(), bot_keys(), run_secrets(), dry_run=True), command="plan")
    lines = text.splitlines()
    assert lines[0] == "rotator plan · account 123456789012 · 2026-11-30 03:00:00 UTC · dry-run: nothing was changed"
    header = next(line for line in lines if line.startswith("JOB"))
    assert header.split() == ["JOB", "ACTION", "TARGET", "REASON", "OUTCOME"]
    assert "user-keys: failed" not in text
    assert "user-keys: success · 2 users, 4 keys" in text
    assert "bot-keys: failed · 1 users, 1 keys" in text
    assert "run-secrets: success · 3 secrets (2 active, 1 finished)" in text
    assert text.count("skipped gen3wf-h:") == 1  # a user skipped by both key jobs is reported once
    assert "  error: gen3wf-h-2-bot: store unreadable" in text


def test_a_job_that_could_not_plan():
    text = render_text(result(JobResult("user-keys", error="GetAccountAuthorizationDetails: AccessDenied: no")), command="plan")
    assert "nothing to do" in text
    assert "user-keys: error · not planned · no actions" in text
    assert "  error: GetAccountAuthorizationDetails: AccessDenied" in text


def test_the_json_document_follows_its_schema(aws, monkeypatch):
    """Every job's JSON output, from a real run, validates against the schema shipped in the package."""
    from importlib.resources import files

    import jsonschema
    from freezegun import freeze_time

    from helpers import HOST, T0, TAG, days, make_key, make_user
    from rotator.names import bot_user_name, iam_user_name
    from rotator.runner import Runner
    from rotator.settings import load_settings

    schema = json.loads(files("rotator.schemas").joinpath("run-document.schema.json").read_text())
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    iam, sm = aws.client("iam"), aws.client("secretsmanager")
    with freeze_time(T0):
        make_user(iam, iam_user_name(HOST, "1"), TAG)
        make_user(iam, bot_user_name(HOST, "1"), TAG)
        make_key(iam, iam_user_name(HOST, "1"), created=T0)
        sm.create_secret(Name="tower-abc/TOKEN", SecretString="v")
    with freeze_time(T0 + days(40)):
        for dry_run in (True, False):
            result = Runner(load_settings(), aws=aws).run(["user-keys", "bot-keys", "run-secrets"], dry_run=dry_run)
            document = json.loads(render_json(result, command="plan" if dry_run else "run"))
            jsonschema.validate(document, schema)
    codes = {a["reason_code"] for j in document["jobs"] for a in j["actions"]}
    assert codes == {"expired", "missing-key", "run-expired"}
