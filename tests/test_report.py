"""Rendering of a run for people (text) and programs (one JSON document), from hand-made results."""

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rotator.capacity import UserQuota
from rotator.jobs._keys import KeyPlan
from rotator.jobs.run_secrets import RunSecretsPlan
from rotator.model import CREATE_KEY, DELETE_KEY, DELETE_SECRET, DONE, DRY_RUN, FAILED, FORGET_KEY, Action, Outcome, Skipped
from rotator.names import bot_user_name, iam_user_name
from rotator.report import fold, render_json, render_text, terminal_width, to_document
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
    assert doc["exit_code"] == 1 and doc["dry_run"] is False and doc["account"] == "123456789012"
    users, bots, secrets = doc["jobs"]
    assert users["outcome"] == "success" and users["managed_users"] == 2 and users["managed"] == 4
    assert users["actions"] == [{"job": "user-keys", "kind": "delete-key", "target": "gen3wf-h-1/AKIA1",
                                 "reason": "expired: 34d > 30d", "outcome": "done", "error": None,
                                 "reason_code": "", "user": "gen3wf-h-1", "key_id": "AKIA1", "age_days": None, "secret": None,
                                 "run_id": None}]
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
    assert lines[:2] == ["rotator plan · account 123456789012 · 2026-11-30 03:00:00 UTC", "  dry-run: nothing was changed"]
    header = next(line for line in lines if line.startswith("JOB"))
    assert header.split() == ["JOB", "ACTION", "TARGET", "OUTCOME"]
    row = lines.index(header) + 1
    assert lines[row].split() == ["user-keys", "delete-key", "gen3wf-h-1/AKIA1", "not-run"]
    assert lines[row + 1] == " " * header.index("ACTION") + "expired: 34d > 30d"  # the reason, under ACTION
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


# --- the 80-column text output, against golden files -----------------------------------------

GOLDEN = Path(__file__).parent / "golden"
LONG_HOST = "data-commons.biomedical-research.example.org"
END_USER = iam_user_name(LONG_HOST, "8f14e45fceea167a5a36dedd4bea2543")  # cut to 63 characters
BOT = bot_user_name(LONG_HOST, "alice.smith@example.org")
BOT_42 = bot_user_name(LONG_HOST, "42")


def key_action(job, kind, user, key_id, reason, code):
    target = f"{user}/{key_id}" if key_id else user
    return Action(job, kind, target, reason, user=user, key_id=key_id, reason_code=code)


def long_plan(*, brake: Brake | None = None) -> RunResult:
    """A deterministic plan of every kind of action, with the longest names the service makes."""
    user_actions = (
        key_action("user-keys", DELETE_KEY, END_USER, "AKIAIOSFODNN7EXAMPLE", "expired: 34d > 30d", "expired"),
        key_action("user-keys", DELETE_KEY, END_USER, "AKIAI44QH8DHBEXAMPLE", "inactive", "inactive"),
    )
    bot_actions = (
        key_action("bot-keys", FORGET_KEY, BOT_42, "AKIAJ5Q3MNZ2EXAMPLE0", "stored key no longer exists in IAM", "stale-entry"),
        key_action("bot-keys", DELETE_KEY, BOT, "AKIA2OGYBAH6EXAMPLE1",
                   "adopt: replace, not created by rotator (not in its store), 412d old >= 60m grace", "adopt"),
        key_action("bot-keys", CREATE_KEY, BOT, None, "no live key, verified before use", "missing-key"),
        key_action("bot-keys", CREATE_KEY, BOT, None, "1 of 2 live keys, verified before use", "missing-key"),
        key_action("bot-keys", DELETE_KEY, BOT_42, "AKIA5EXAMPLEEXAMPLE2", "rotation: newest key 16d >= 15d (lifetime 30d / 2)",
                   "rotation"),
    )
    secret = Action("run-secrets", DELETE_SECRET, "tower-4kd9XbQ2abcdefgh/AWS_SECRET_ACCESS_KEY",
                    "run 4kd9XbQ2abcdefgh SUCCEEDED (seqera, workspace 42) in us-east-1", run_id="4kd9XbQ2abcdefgh",
                    reason_code="run-finished")
    skipped = Skipped(f"gen3wf-{LONG_HOST.replace('.', '-')}", "tagged name=gen3wf-data-commons-biomedical-research-example-org"
                      " but the name does not follow the gen3wf-<host>-<userid> rule")
    plans = [
        KeyPlan(job="user-keys", actions=user_actions, managed=1250, skipped=(skipped,), inventory_source="credential-report",
                managed_users=1200),
        KeyPlan(job="bot-keys", actions=bot_actions, managed=2400, managed_users=1200,
                errors=(f"{bot_user_name(LONG_HOST, '7')}: store unreadable: StoreUnreadable: entry 0 has no created date",)),
        RunSecretsPlan(job="run-secrets", actions=(secret,), managed=3, states={"finished": 1, "active": 2},
                       inventory_source="list-secrets + seqera"),
    ]
    jobs = []
    for plan in plans:
        if brake is not None:
            braked = plan.job == "bot-keys"
            jobs.append(JobResult(plan.job, plan=plan, brake=brake if braked else None,
                                  not_run=None if braked else "brake on bot-keys"))
        else:
            jobs.append(JobResult(plan.job, plan=plan, outcomes=tuple(Outcome(a, DRY_RUN) for a in plan.actions)))
    return RunResult(now=NOW, dry_run=True, account_id="123456789012", jobs=jobs, user_quota=UserQuota(users=4210, quota=5000),
                     run_id="0123456789ab", hostname=LONG_HOST)


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; ``UPDATE_GOLDEN=1`` rewrites it (then review the diff)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8"), f"differs from {path} (UPDATE_GOLDEN=1 to accept)"


def test_plan_text_at_80_columns_matches_its_golden_file():
    text = render_text(long_plan(), command="plan", width=80)
    check_golden("plan-80.txt", text)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_refused_adoption_text_at_80_columns_matches_its_golden_file():
    from rotator.safety import check_brakes
    from rotator.settings import SafetySettings

    plan = long_plan().jobs[1].plan
    adoptions = [plan.actions[1]] * 30  # a first run on a deployment whose 30 bot keys rotator did not create
    brake = check_brakes("bot-keys", adoptions, managed=40, settings=SafetySettings())
    text = render_text(long_plan(brake=brake), command="run", width=80)
    check_golden("run-refused-adoption-80.txt", text)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_wider_terminal_keeps_each_action_on_one_row_and_its_reason_below():
    text = render_text(long_plan(), command="plan", width=132)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 132
    assert lines[0].endswith("· dry-run: nothing was changed")  # the header fits on one line
    target = f"{BOT}/AKIA2OGYBAH6EXAMPLE1"
    row = next(n for n, line in enumerate(lines) if target in line)
    assert lines[row].split() == ["bot-keys", "delete-key", target, "dry-run"]
    assert lines[row + 1].strip() == "adopt: replace, not created by rotator (not in its store), 412d old >= 60m grace"
    narrow = render_text(long_plan(), command="plan", width=80).splitlines()
    assert target not in "\n".join(narrow)  # at 80 columns it is folded, in its column, and reads back whole:
    header = next(line for line in narrow if line.startswith("JOB"))
    column = header.index("TARGET")
    targets = []  # each row's TARGET cell and its continuation lines (the reason starts further left, under ACTION)
    for line in narrow[narrow.index(header) + 1:]:
        if not line:
            break
        if not line[0].isspace():
            targets.append(line[column:].split()[0])
        elif line[:column].isspace():
            targets[-1] += line[column:]
    assert f"{BOT}/AKIA2OGYBAH6EXAMPLE1" in targets and len(targets) == 8
    # cut between the words of the name, the user's end and its key on one line
    assert "alice.smith@example.org-bot/AKIA2OGYBAH6EXAMPLE1" in [line.strip() for line in narrow]


@pytest.mark.parametrize(
    ("text", "width", "pieces"),
    [
        ("gen3wf-h-1/AKIA1", 40, ["gen3wf-h-1/AKIA1"]),
        ("gen3wf-host-1/AKIAIOSFODNN7EXAMPLE", 20, ["gen3wf-host-1/", "AKIAIOSFODNN7EXAMPLE"]),
        ("gen3wf-a-very-long-user-name", 12, ["gen3wf-a-", "very-long-", "user-name"]),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10, ["ABCDEFGHIJ", "KLMNOPQRST", "UVWXYZ"]),
    ],
)
def test_fold_cuts_names_where_they_read_best(text, width, pieces):
    assert fold(text, width) == pieces
    assert "".join(pieces) == text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_width_comes_from_the_terminal_only_when_stdout_is_one(monkeypatch):
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_width(FakeTerminal()) == 132
    assert terminal_width(io.StringIO()) == 80  # a pipe or a file: 80, whatever the terminal around it
