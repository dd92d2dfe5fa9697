"""Log set-up: one JSON object per line, fixed fields, secret-looking fields redacted."""

import io
import json
from datetime import UTC, datetime

import pytest
import structlog

from rotator import logs
from rotator.concurrency import Progress


def capture(format="json", level="info"):
    buffer = io.StringIO()
    logs.configure(format=format, level=level, stream=buffer)
    return buffer


def test_json_lines_with_level_and_timestamp():
    out = capture()
    try:
        structlog.get_logger("t").info("key.deleted", user="u", key_id="AKIA1")
        structlog.get_logger("t").debug("not.shown")
    finally:
        logs.configure()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "key.deleted" and event["level"] == "info" and event["timestamp"].endswith("Z")


def test_secret_looking_fields_are_redacted_whatever_their_spelling():
    out = capture(level="debug")
    try:
        structlog.get_logger("t").info(
            "oops",
            secret_access_key="wJalrXUtnFEMI/K7MDENG",
            SecretString="hunter2",
            seqera_token="tkn-123",
            db_password="pw-456",
            key_id="AKIAKEEP",
        )
    finally:
        logs.configure()
    text = out.getvalue()
    for value in ("wJalrXUtnFEMI/K7MDENG", "hunter2", "tkn-123", "pw-456"):
        assert value not in text
    assert json.loads(text)["key_id"] == "AKIAKEEP"  # ids are not secrets


def test_context_fields_are_on_every_event_of_a_run():
    out = capture()
    try:
        with structlog.contextvars.bound_contextvars(run_id="r1", hostname="h"):
            structlog.get_logger("t").info("a")
            structlog.get_logger("t").info("b")
        structlog.get_logger("t").info("c")
    finally:
        logs.configure()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e.get("run_id") for e in events] == ["r1", "r1", None]


def test_console_format_is_not_json():
    out = capture(format="console")
    try:
        structlog.get_logger("t").info("job.finished", job="user-keys")
    finally:
        logs.configure()
    assert "job.finished" in out.getvalue() and not out.getvalue().startswith("{")


def test_aws_spellings_and_nested_secrets_are_redacted():
    out = capture()
    try:
        structlog.get_logger("t").info(
            "oops",
            response={"AccessKey": {"AccessKeyId": "AKIAKEEPKEEPKEEP0001", "SecretAccessKey": "aws-spelling-secret"}},
            entries=[{"key_secret": "db-column-secret"}, {"secretAccessKey": "camel-secret"}],
            ENCRYPTION_KEY="fernet-key-value",
        )
    finally:
        logs.configure()
    text = out.getvalue()
    for value in ("aws-spelling-secret", "db-column-secret", "camel-secret", "fernet-key-value"):
        assert value not in text
    assert "AKIAKEEPKEEPKEEP0001" in text


def test_a_secret_the_process_has_seen_is_masked_anywhere():
    from rotator.model import NewKey

    NewKey("u-bot", "AKIAKEEPKEEPKEEP0002", datetime.now(UTC), "seen-by-this-process-1234")  # remembered on creation
    logs.remember_secret("a-token-from-a-file-5678")
    out = capture()
    try:
        structlog.get_logger("t").error("boom", error="ValueError: bad header b'Bearer a-token-from-a-file-5678\\n'",
                                        note="value was seen-by-this-process-1234!")
    finally:
        logs.configure()
    text = out.getvalue()
    assert "seen-by-this-process-1234" not in text and "a-token-from-a-file-5678" not in text
    assert text.count("[redacted]") == 2


def test_library_loggers_are_pinned_at_warning_whatever_the_level():
    import logging

    logging.getLogger().setLevel(logging.DEBUG)
    try:
        capture(level="debug")
        for name in ("botocore", "boto3", "urllib3"):
            assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING
    finally:
        logging.getLogger().setLevel(logging.WARNING)
        logs.configure()


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_console_format_redacts_secrets_too():
    logs.remember_secret("remembered-console-secret-42")
    out = capture(format="console", level="debug")
    try:
        structlog.get_logger("t").error(
            "key.store_failed",
            user="gen3wf-h-1-bot",
            secret_access_key="console-field-secret",
            response={"AccessKey": {"AccessKeyId": "AKIAKEEPKEEPKEEP0003", "SecretAccessKey": "console-nested-secret"}},
            error="ValueError: bad value remembered-console-secret-42",
        )
    finally:
        logs.configure()
    text = out.getvalue()
    for value in ("console-field-secret", "console-nested-secret", "remembered-console-secret-42"):
        assert value not in text
    assert "key.store_failed" in text and "AKIAKEEPKEEPKEEP0003" in text and text.count("[redacted]") == 3
    assert not text.startswith("{")


def test_a_traceback_is_redacted_in_console_format():
    logs.remember_secret("secret-in-an-exception-7")
    out = capture(format="console")
    try:
        try:
            raise RuntimeError("boom secret-in-an-exception-7")
        except RuntimeError:
            structlog.get_logger("t").exception("unit.failed")
    finally:
        logs.configure()
    assert "secret-in-an-exception-7" not in out.getvalue() and "RuntimeError" in out.getvalue()


def test_the_default_format_is_console_on_a_terminal_and_json_otherwise():
    assert logs.default_format(FakeTerminal()) == "console"
    assert logs.default_format(io.StringIO()) == "json"


def test_console_colours_only_on_a_terminal_without_no_color(monkeypatch):
    def line(stream):
        logs.configure(format="console", stream=stream)
        try:
            structlog.get_logger("t").warning("inventory.no_users", hint="is ROTATOR_HOSTNAME right?")
        finally:
            logs.configure()
        return stream.getvalue()

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" in line(FakeTerminal())
    assert "\x1b[" not in line(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in line(FakeTerminal())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def terminal():
    screen = FakeTerminal()
    Progress.show_on(screen)
    yield screen
    Progress.show_on(None)


def test_progress_is_one_line_overwritten_in_place_and_cleared_at_the_end(terminal):
    clock = FakeClock()
    progress = Progress(structlog.get_logger("t"), job="bot-keys", phase="confirming keys", total=1250, clock=clock)
    progress.tick(100)  # before DRAW_AFTER_SECONDS: a short phase never draws
    assert terminal.getvalue() == ""
    clock.now = 1.0
    progress.tick(20)
    clock.now = 1.05
    progress.tick()  # within REDRAW_SECONDS of the last draw: not redrawn
    clock.now = 1.2
    progress.tick(9)
    assert terminal.getvalue() == "\rbot-keys: confirming keys 120/1250 …" + "\rbot-keys: confirming keys 130/1250 …"
    progress.tick(1120)  # done: the line is cleared
    line = "bot-keys: confirming keys 130/1250 …"
    assert terminal.getvalue().endswith("\r" + " " * len(line) + "\r")
    assert "\n" not in terminal.getvalue()


def test_a_log_line_clears_the_progress_line_first(terminal):
    clock = FakeClock()
    progress = Progress(structlog.get_logger("t"), job="user-keys", phase="confirming keys", total=10, clock=clock)
    logs.configure(format="console", stream=terminal)
    try:
        clock.now = 1.0
        progress.tick()
        structlog.get_logger("t").warning("inventory.keys_unreadable", user="u")
    finally:
        logs.configure()
    drawn = "\ruser-keys: confirming keys 1/10 …"
    rest = terminal.getvalue().removeprefix(drawn)
    assert rest.startswith("\r" + " " * (len(drawn) - 1) + "\r")  # cleared first,
    assert "inventory.keys_unreadable" in rest  # then the log line

