"""The operator's command line (#15): --user, ROTATOR_EXCLUDE_USERS, truthful summaries, clear errors, help,
logs on a terminal, the progress line, first-run adoption."""

import io
import json
import socket
import sys
from datetime import timedelta

import pytest
from freezegun import freeze_time

from helpers import HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator import cli, logs
from rotator.concurrency import Progress
from rotator.keystore.secretsmanager import SecretsManagerStore
from rotator.names import bot_user_name, iam_user_name
from rotator.runner import Runner
from rotator.settings import load_settings

U1, U2, U3 = (iam_user_name(HOST, n) for n in ("1", "2", "3"))
NOW = T0 + days(40)


@pytest.fixture
def three_expired(aws):
    iam = aws.client("iam")
    with freeze_time(T0):
        for user in (U1, U2, U3):
            make_user(iam, user, TAG)
            make_key(iam, user, created=T0)
    return iam


def run(aws, monkeypatch, users=None, **env):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with freeze_time(NOW):
        return Runner(load_settings(), aws=aws).run(["user-keys"], dry_run=False, users=users)


def test_user_limits_a_run_to_those_users(aws, monkeypatch, three_expired):
    result = run(aws, monkeypatch, users=[U2])
    assert [a.user for a in result.jobs[0].plan.actions] == [U2]
    assert key_ids(three_expired, U2) == set() and len(key_ids(three_expired, U1)) == 1


def test_excluded_users_are_never_touched_and_counted(aws, monkeypatch, three_expired):
    result = run(aws, monkeypatch, ROTATOR_EXCLUDE_USERS=json.dumps([U1, "3"]))  # an IAM name and a Gen3 id
    plan = result.jobs[0].plan
    assert [a.user for a in plan.actions] == [U2]
    assert sorted((s.name, s.reason) for s in plan.skipped) == [
        (U1, "excluded by ROTATOR_EXCLUDE_USERS"), (U3, "excluded by ROTATOR_EXCLUDE_USERS"),
    ]
    assert len(key_ids(three_expired, U1)) == 1 and len(key_ids(three_expired, U3)) == 1


def test_a_hostname_with_no_tagged_users_warns(aws, monkeypatch, three_expired, log_output):
    result = run(aws, monkeypatch, ROTATOR_HOSTNAME="typo.example.org")
    assert result.exit_code == 0
    assert "no users tagged name=gen3wf-typo-example-org (is ROTATOR_HOSTNAME right?)" in log_output.getvalue()


def test_jobs_not_run_because_another_was_refused_say_so(aws, monkeypatch, three_expired):
    from rotator.report import render_text

    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_SAFETY__MAX_DELETIONS", "1")
    with freeze_time(NOW):
        result = Runner(load_settings(), aws=aws).run(["user-keys", "run-secrets"], dry_run=False)
    text = render_text(result, command="run")
    assert "user-keys: refused" in text
    assert "run-secrets: refused · not run (brake on user-keys)" in text
    assert result.exit_code == 3


@pytest.mark.parametrize("argv", [["plan", "--apply"], ["-q", "plan", "--apply"], ["plan", "--job", "user-keys", "--apply"]])
def test_plan_apply_hints_run_apply(capsys, argv):
    assert cli.main(argv) == 2
    assert "rotator run --apply" in capsys.readouterr().err


def test_a_user_named_by_user_that_is_not_managed_is_warned_about(aws, monkeypatch, three_expired, log_output):
    result = run(aws, monkeypatch, users=[U2, "gen3wf-no-such-user"])
    assert [a.user for a in result.jobs[0].plan.actions] == [U2]
    warned = [json.loads(line) for line in log_output.getvalue().splitlines() if '"user.not_managed"' in line]
    assert [w["user"] for w in warned] == ["gen3wf-no-such-user"]


def test_plan_and_run_leave_out_jobs_their_schedule_disables_unless_named(aws, monkeypatch, capsys, three_expired):
    env = {"ROTATOR_SCHEDULE__USER_KEYS": "", "AWS_REGION": "us-east-1"}
    assert main(monkeypatch, "plan", "--output", "json", **env) == 0
    assert [j["job"] for j in json.loads(capsys.readouterr().out)["jobs"]] == ["bot-keys", "run-secrets"]
    assert main(monkeypatch, "plan", "--job", "user-keys", "--output", "json", **env) == 0
    assert [j["job"] for j in json.loads(capsys.readouterr().out)["jobs"]] == ["user-keys"]


def test_migrate_store_refuses_the_same_store_twice(monkeypatch, capsys):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    assert cli.main(["migrate-store", "--from", "secretsmanager", "--to", "secretsmanager"]) == 2
    assert "--from and --to both name secretsmanager" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ROTATOR_ALLOWED_ACCOUNT_IDS", "123456789012", """expected a JSON list of 12-digit strings, e.g. '["123456789012"]'"""),
        ("ROTATOR_ALLOWED_ACCOUNT_IDS", '["1234"]', "expected a JSON list of 12-digit strings"),
        ("ROTATOR_RUN_SECRETS__SEQERA__URL", "seqera.example.org", "expected an http(s) URL"),
    ],
)
def test_validation_errors_show_the_expected_form(monkeypatch, capsys, name, value, expected):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv(name, value)
    assert cli.main(["plan"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "^https?" not in err  # no regex shown


def test_a_busy_port_exits_2_with_one_line(aws, monkeypatch, capsys):
    from prometheus_client import CollectorRegistry

    from rotator.metrics import Metrics
    from rotator.serve import Service

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_METRICS__BIND_ADDRESS", "127.0.0.1")
    monkeypatch.setenv("ROTATOR_METRICS__PORT", str(busy.getsockname()[1]))
    try:
        code = Service(load_settings(), aws=aws, metrics=Metrics(CollectorRegistry())).serve()
    finally:
        busy.close()
    assert code == 2
    assert capsys.readouterr().err.count("rotator: cannot listen on 127.0.0.1") == 1


def test_config_shows_values_and_sources_with_secrets_masked(monkeypatch, capsys, tmp_path):
    config = tmp_path / "gen3-workflow-config.yaml"
    config.write_text(f"HOSTNAME: {HOST}\nIAM_KEYS_LIFETIME_DAYS: 14\nDB_PASSWORD: db-pa55word\n")
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(config))
    monkeypatch.setenv("ROTATOR_RUN_SECRETS__SEQERA__TOKEN", "seqera-t0ken-value")
    monkeypatch.setenv("ROTATOR_DRY_RUN", "false")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # any AWS call would fail loudly
    assert cli.main(["config", "--output", "json"]) == 0
    out = capsys.readouterr().out
    rows = {r["variable"]: (r["value"], r["source"]) for r in json.loads(out)["settings"]}
    assert rows["ROTATOR_DRY_RUN"] == ("false", "environment")
    assert rows["ROTATOR_HOSTNAME"] == (HOST, f"HOSTNAME in {config}")
    assert rows["ROTATOR_USER_KEYS__LIFETIME_DAYS"] == ("14", f"IAM_KEYS_LIFETIME_DAYS in {config}")
    assert rows["ROTATOR_BOT_KEYS__LIFETIME_DAYS"] == ("30", "default")
    assert rows["ROTATOR_RUN_SECRETS__SEQERA__TOKEN"] == ("******** (set)", "environment")
    assert "seqera-t0ken-value" not in out and "db-pa55word" not in out
    assert cli.main(["config"]) == 0  # text: fits 80 columns, long sources folded under the value column
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "ROTATOR_DRY_RUN" in text and "false  (environment)" in text
    assert "seqera-t0ken-value" not in text and "db-pa55word" not in text
    monkeypatch.setenv("ROTATOR_DRY_RUN", "maybe")
    assert cli.main(["config"]) == 2


# --- help ------------------------------------------------------------------------------------

SUBCOMMANDS = ("plan", "run", "serve", "demo", "restore-secrets", "migrate-store", "config", "status")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_says_what_it_reads_needs_and_returns(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "reads:" in text and "needs:" in text and "exit codes:" in text
    assert ("ROTATOR_HOSTNAME" in text) is (command != "demo")  # the demo brings its own settings
    codes = text.split("exit codes:")[1]
    assert "  0  " in codes and "  2  " in codes
    assert ("  3  " in codes) is (command in ("plan", "run"))  # only those can be refused by a brake
    assert max(len(line) for line in text.split("reads:")[1].splitlines()) <= 80


def test_top_level_help_and_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "status" in text and "config" in text and "--version" in text and "-q, --quiet" in text
    assert all(f"  {code}  " in text.split("exit codes:")[1] for code in (0, 1, 2, 3))
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("rotator ")


# --- logs: console on a terminal, JSON otherwise; -q/-v; each error once ---------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal_stderr(monkeypatch) -> FakeTerminal:
    """Make stderr a terminal; called in the test's body (pytest's capture swaps sys.stderr back when the call begins)."""
    screen = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", screen)
    return screen


@pytest.fixture(autouse=True)
def _default_logs():
    yield
    logs.configure()


def main(monkeypatch, *args, **env):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with freeze_time(NOW):
        return cli.main(list(args))


def test_console_logs_on_a_terminal_json_otherwise(aws, monkeypatch, capsys, three_expired):
    terminal = terminal_stderr(monkeypatch)
    assert main(monkeypatch, "plan", "--job", "user-keys") == 0
    console = terminal.getvalue()
    assert "job.finished" in console and not any(line.startswith("{") for line in console.splitlines())
    terminal.seek(0)
    terminal.truncate()
    assert main(monkeypatch, "plan", "--job", "user-keys", ROTATOR_LOG__FORMAT="json") == 0  # the setting wins
    assert all(json.loads(line) for line in terminal.getvalue().splitlines())
    monkeypatch.delenv("ROTATOR_LOG__FORMAT")
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe: JSON
    capsys.readouterr()
    assert main(monkeypatch, "plan", "--job", "user-keys") == 0
    assert [json.loads(line)["event"] for line in sys.stderr.getvalue().splitlines()][-1] == "job.finished"


def test_a_printed_plan_is_not_logged_again_action_by_action(aws, monkeypatch, capsys, three_expired, log_output):
    """plan prints every action: its dry-run events are debug (-v); serve, which prints nothing, logs them at info."""
    assert main(monkeypatch, "plan", "--job", "user-keys") == 0
    events = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert "action.dry_run" not in events and "job.finished" in events
    assert main(monkeypatch, "-v", "plan", "--job", "user-keys") == 0
    assert [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()].count("action.dry_run") == 3
    logs.configure(format="json", level="info", stream=log_output)
    with freeze_time(NOW):  # as serve runs a job: nothing printed, so each planned action is an info event
        Runner(load_settings(), aws=aws).run(["user-keys"], dry_run=True)
    dry = [json.loads(line) for line in log_output.getvalue().splitlines() if '"action.dry_run"' in line]
    assert len(dry) == 3 and {e["level"] for e in dry} == {"info"}


@pytest.mark.parametrize("args", [["-q", "plan"], ["plan", "-q"], ["plan", "--quiet"]])
def test_quiet_logs_warnings_and_errors_only(aws, monkeypatch, capsys, three_expired, args):
    assert main(monkeypatch, *args, "--job", "user-keys", ROTATOR_HOSTNAME="typo.example.org") == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in events] == ["inventory.no_users"] and events[0]["level"] == "warning"


def test_verbose_logs_debug_events(aws, monkeypatch, capsys, three_expired):
    link = {"ROTATOR_METRICS_SERVICE_HOST": "10.0.0.7"}  # a Kubernetes service link: a debug event says it is ignored
    assert main(monkeypatch, "plan", "--job", "user-keys", **link) == 0
    quiet = capsys.readouterr().err
    assert "config.service_links_ignored" not in quiet and '"aws.call"' not in quiet
    assert main(monkeypatch, "-v", "plan", "--job", "user-keys", **link) == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert "config.service_links_ignored" in {e["event"] for e in events}
    calls = {(e["service"], e["operation"], e["status"]) for e in events if e["event"] == "aws.call"}
    assert {("sts", "GetCallerIdentity", 200), ("iam", "ListAccessKeys", 200)} <= calls  # every call, one line each


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROTATOR_USER_KEYS__LIFETIME_DAYS": "0"}, "rotator: invalid configuration: ROTATOR_USER_KEYS__LIFETIME_DAYS"),
        ({"ROTATOR_ALLOWED_ACCOUNT_IDS": '["111122223333"]'},
         "rotator: AWS account 123456789012 is not in ROTATOR_ALLOWED_ACCOUNT_IDS"),
    ],
)
def test_a_configuration_error_is_printed_once_as_one_line(aws, monkeypatch, capsys, env, message):
    assert main(monkeypatch, "run", "--apply", **env) == 2
    err = capsys.readouterr().err
    assert err.count(message) == 1 and err.startswith(message)
    assert len(err.splitlines()) == 1  # not also a JSON log event


def test_progress_line_on_a_terminal_for_text_output_only(aws, monkeypatch, capsys, three_expired):
    terminal = terminal_stderr(monkeypatch)
    monkeypatch.setattr(Progress, "DRAW_AFTER_SECONDS", 0.0)  # the seeded account is small: draw from the first user
    monkeypatch.setattr(Progress, "REDRAW_SECONDS", 0.0)
    assert main(monkeypatch, "plan", "--job", "user-keys") == 0
    screen = terminal.getvalue()
    line = "user-keys: confirming keys 1/3 …"
    assert "\r" + line in screen
    assert "\r" + " " * len("user-keys: confirming keys 2/3 …") + "\r" in screen  # cleared at the end of the phase
    assert "\r" not in capsys.readouterr().out  # the table is never mixed with it
    for args in (["plan", "--job", "user-keys", "--output", "json"], ["-q", "plan", "--job", "user-keys"]):
        terminal.seek(0)
        terminal.truncate()
        assert main(monkeypatch, *args) == 0
        assert "\r" not in terminal.getvalue() and "confirming keys" not in terminal.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no line
    assert main(monkeypatch, "plan", "--job", "user-keys") == 0
    assert "\r" not in sys.stderr.getvalue()


# --- adoption: bot keys rotator did not create ----------------------------------------------

BOTS = [bot_user_name(HOST, str(n)) for n in range(10, 22)]
PREFIX = f"gen3wf-rotator/{HOST}/bot-keys/"


@pytest.fixture
def existing_deployment(aws):
    """Twelve bot users with two keys each that the service made before rotator came (none stored)."""
    iam = aws.client("iam")
    with freeze_time(T0):
        for bot in BOTS:
            make_user(iam, bot, TAG)
            make_key(iam, bot, created=T0 + days(20))
            make_key(iam, bot, created=T0 + days(35))
    return iam


def test_first_run_adoption_is_named_and_the_brake_explains_it(aws, monkeypatch, capsys, existing_deployment):
    from importlib.resources import files

    import jsonschema

    assert main(monkeypatch, "plan", "--job", "bot-keys", "--output", "json") == 3
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, json.loads(files("rotator.schemas").joinpath("run-document.schema.json").read_text()))
    job = document["jobs"][0]
    deletions = [a for a in job["actions"] if a["kind"] == "delete-key"]
    assert len(deletions) == 24 and {a["reason_code"] for a in deletions} == {"adopt"}
    assert deletions[0]["reason"] == "adopt: replace, not created by rotator (not in its store), 20d old >= 60m grace"
    message = job["brake"]["message"]
    assert message.startswith("bot-keys: plan deletes 24 of 24 managed (100%)")
    assert "first-run adoption: all 24 deletions are bot keys that rotator did not create" in message
    assert "review the plan's adopt: replace rows" in message and "ROTATOR_SAFETY__MAX_DELETION_FRACTION=1" in message
    assert "ROTATOR_BOT_KEYS__STORE=gen3workflow-db" in message and "need no replacement" in message
    assert all(len(key_ids(existing_deployment, bot)) == 2 for bot in BOTS)  # nothing touched

    # The adoption run, let through once: every bot user ends with two new keys, both stored.
    before = {bot: key_ids(existing_deployment, bot) for bot in BOTS}
    assert main(monkeypatch, "run", "--apply", "--job", "bot-keys", ROTATOR_SAFETY__MAX_DELETION_FRACTION="1") == 0
    store = SecretsManagerStore(aws.client("secretsmanager"), prefix=PREFIX)
    for bot in BOTS:
        now_ids = key_ids(existing_deployment, bot)
        assert len(now_ids) == 2 and not now_ids & before[bot] and store.stored_key_ids(bot) == now_ids
    monkeypatch.delenv("ROTATOR_SAFETY__MAX_DELETION_FRACTION")
    capsys.readouterr()
    assert main(monkeypatch, "plan", "--job", "bot-keys", "--output", "json") == 0  # adopted: nothing left to do
    assert json.loads(capsys.readouterr().out)["jobs"][0]["actions"] == []


def test_adoption_keeps_the_grace_and_an_orphan_stays_an_orphan(aws, monkeypatch, capsys):
    iam = aws.client("iam")
    store = SecretsManagerStore(aws.client("secretsmanager"), prefix=PREFIX)
    young, managed = BOTS[0], BOTS[1]
    with freeze_time(T0):
        make_user(iam, young, TAG)
        make_user(iam, managed, TAG)
        fresh = make_key(iam, young, created=NOW - timedelta(minutes=10))  # younger than the 60m grace
        make_key(iam, managed, created=T0 + days(35), store=store)
        leftover = make_key(iam, managed, created=T0 + days(39))  # next to a stored key: rotator's own leftover
    assert main(monkeypatch, "plan", "--job", "bot-keys", "--output", "json") == 0
    actions = json.loads(capsys.readouterr().out)["jobs"][0]["actions"]
    assert not any(a["key_id"] == fresh.key_id for a in actions)  # an unstored key inside the grace is left alone
    orphan = next(a for a in actions if a["key_id"] == leftover.key_id)
    assert orphan["reason_code"] == "orphan" and orphan["reason"].startswith("orphan: secret not stored")


def test_an_adoption_past_both_limits_names_both_settings_for_the_one_run():
    from rotator.model import DELETE_KEY, Action
    from rotator.safety import check_brakes
    from rotator.settings import SafetySettings

    adopt = [Action("bot-keys", DELETE_KEY, f"b/{n}", "adopt: replace, …", reason_code="adopt") for n in range(600)]
    brake = check_brakes("bot-keys", adopt, managed=600, settings=SafetySettings())
    assert brake.limit == "max_deletions"
    assert "apply it once with ROTATOR_SAFETY__MAX_DELETIONS=600 and ROTATOR_SAFETY__MAX_DELETION_FRACTION=1" in brake.message
    rotation = [Action("bot-keys", DELETE_KEY, f"b/{n}", "rotation: …", reason_code="rotation") for n in range(30)]
    plain = check_brakes("bot-keys", rotation, managed=40, settings=SafetySettings())
    assert "adoption" not in plain.message  # only adoption gets the adoption advice
