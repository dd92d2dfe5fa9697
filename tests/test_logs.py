"""Log set-up: one JSON object per line, fixed fields, secret-looking fields redacted."""

import io
import json
from datetime import UTC, datetime

import structlog

from rotator import logs


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
