"""bot-keys with the gen3workflow-db store, configured from Gen3Workflow's config file alone (the sidecar case):
keys land in the service's own table, the service's "newest row" rule hands out a verified, live key, and
database problems are configuration errors (exit 2) or this job's failure (exit 1), never a crash."""

from __future__ import annotations

import json

import pg
import pytest
from cryptography.fernet import Fernet
from freezegun import freeze_time

from helpers import HOST, T0, TAG, days, key_ids, make_key, make_user
from rotator import cli
from rotator.names import bot_user_name, iam_user_name
from rotator.runner import Runner, utcnow
from rotator.settings import ConfigError, load_settings

postgres_server, postgres, pg_db = pg.postgres_server, pg.postgres, pg.pg_db  # the fixtures

KEY = Fernet.generate_key().decode()
NOW = T0 + days(40)
BOT1, BOT2 = bot_user_name(HOST, "1"), bot_user_name(HOST, "2")


def service_config(tmp_path, pg_db, *, key=KEY, host=None, extra=""):
    params = pg_db.server
    path = tmp_path / "gen3-workflow-config.yaml"
    path.write_text(
        f"HOSTNAME: {HOST}\nDB_DRIVER: postgresql+asyncpg\nDB_HOST: {host or params.host}\nDB_PORT: {params.port}\n"
        f"DB_USER: postgres\nDB_PASSWORD: {pg_db.password}\nDB_DATABASE: {pg_db.dbname}\nENCRYPTION_KEY: {key}\n{extra}"
    )
    return path


def newest_row(pg_db, user_id):
    """The service's get_system_key: the user's row with the greatest created_time, decrypted."""
    with pg_db.connect() as conn:
        row = conn.execute(
            "SELECT key_id, key_secret FROM system_key WHERE user_id = %s ORDER BY created_time DESC LIMIT 1", (user_id,)
        ).fetchone()
    return (row[0], Fernet(KEY.encode()).decrypt(row[1].encode()).decode()) if row else None


def test_a_sidecar_runs_from_the_services_config_alone(aws, pg_db, tmp_path, monkeypatch):
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(service_config(tmp_path, pg_db)))
    settings = load_settings()
    assert settings.bot_keys.store == "gen3workflow-db"  # the default when the config names the database
    iam = aws.client("iam")
    for bot in (BOT1, BOT2):
        make_user(iam, bot, TAG)
    make_user(iam, iam_user_name(HOST, "1"), TAG)
    # No frozen clock here: psycopg_pool's threads need real time.
    result = Runner(settings, aws=aws).run(["bot-keys"], dry_run=False)
    assert result.exit_code == 0, result.jobs[0].outcomes
    for user_id, bot in (("1", BOT1), ("2", BOT2)):
        ids = key_ids(iam, bot)
        assert len(ids) == 2
        key_id, secret = newest_row(pg_db, user_id)
        assert key_id in ids and secret  # the service hands out a live key, decryptable with its key
    with pg_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM system_key").fetchone()[0] == 4
    again = Runner(settings, aws=aws).run(["bot-keys"], dry_run=True)
    assert again.jobs[0].plan.actions == ()  # stored keys are stored: nothing to do


def test_a_key_the_service_made_itself_is_a_stored_key_not_an_orphan(aws, pg_db, tmp_path, monkeypatch):
    """The service's get_system_key creates a key and its row on first use: rotator must never delete it."""
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(service_config(tmp_path, pg_db)))
    settings = load_settings()
    iam = aws.client("iam")
    make_user(iam, BOT1, TAG)
    made = make_key(iam, BOT1, created=utcnow() - days(3))
    with pg_db.connect() as conn:
        token = Fernet(KEY.encode()).encrypt(made.secret.encode()).decode()
        conn.execute("INSERT INTO system_key (key_id, key_secret, user_id) VALUES (%s, %s, %s)", (made.key_id, token, "1"))
    result = Runner(settings, aws=aws).run(["bot-keys"], dry_run=False)
    assert result.exit_code == 0
    assert made.key_id in key_ids(iam, BOT1) and len(key_ids(iam, BOT1)) == 2


def run_cli(capsys, *args):
    capsys.readouterr()
    code = cli.main(list(args))
    return code, *capsys.readouterr()


def test_a_wrong_encryption_key_exits_2_before_any_change(aws, pg_db, tmp_path, monkeypatch, capsys):
    with pg_db.connect() as conn:
        token = Fernet(KEY.encode()).encrypt(b"s").decode()
        conn.execute("INSERT INTO system_key (key_id, key_secret, user_id) VALUES ('AKIAEXISTINGEXISTING', %s, '9')", (token,))
    other = Fernet.generate_key().decode()
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(service_config(tmp_path, pg_db, key=other)))
    make_user(aws.client("iam"), BOT1, TAG)
    code, out, err = run_cli(capsys, "run", "--apply", "--job", "bot-keys")
    assert code == 2 and "ENCRYPTION_KEY does not decrypt" in err
    assert key_ids(aws.client("iam"), BOT1) == set()
    assert other not in out + err and pg_db.password not in out + err


def test_an_unreachable_database_fails_the_job_alone(aws, pg_db, tmp_path, monkeypatch, capsys):
    path = service_config(tmp_path, pg_db)
    path.write_text(path.read_text().replace(f"DB_PORT: {pg_db.server.port}", "DB_PORT: 9"))  # nothing listens there
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(path))
    iam = aws.client("iam")
    make_user(iam, BOT1, TAG)
    make_user(iam, iam_user_name(HOST, "1"), TAG)
    with freeze_time(T0):
        make_key(iam, iam_user_name(HOST, "1"), created=T0)
    code, out, err = run_cli(capsys, "run", "--apply", "--output", "json")
    doc = json.loads(out)
    outcomes = {j["job"]: j["outcome"] for j in doc["jobs"]}
    assert code == 1 and outcomes["bot-keys"] == "error" and outcomes["user-keys"] == "success"
    assert "database unreachable" in doc["jobs"][1]["error"]
    assert pg_db.password not in out + err


def test_the_service_can_override_db_settings_with_its_own_environment(pg_db, tmp_path, monkeypatch):
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(service_config(tmp_path, pg_db, host="db.in.the.file")))
    monkeypatch.setenv("DB_HOST", pg_db.server.host)  # as Gen3Workflow itself lets it
    assert load_settings().bot_keys.db.host == pg_db.server.host


def test_db_secrets_come_from_files_or_the_services_config_never_a_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ROTATOR_HOSTNAME", HOST)
    monkeypatch.setenv("ROTATOR_BOT_KEYS__DB__PASSWORD", "s3cret-pw")
    with pytest.raises(ConfigError, match="ROTATOR_BOT_KEYS__DB__PASSWORD_FILE") as info:
        load_settings()
    assert "s3cret-pw" not in str(info.value)
    monkeypatch.delenv("ROTATOR_BOT_KEYS__DB__PASSWORD")
    monkeypatch.setenv("ROTATOR_BOT_KEYS__STORE", "gen3workflow-db")
    with pytest.raises(ConfigError, match="store gen3workflow-db needs ROTATOR_BOT_KEYS__DB__HOST"):
        load_settings()
    password, key = tmp_path / "pw", tmp_path / "key"
    password.write_text("pw\n")
    key.write_text(KEY)
    for name, value in dict(HOST="db", USER="gen3workflow", DATABASE="gen3workflow", PASSWORD_FILE=str(password),
                            ENCRYPTION_KEY_FILE=str(key)).items():
        monkeypatch.setenv(f"ROTATOR_BOT_KEYS__DB__{name}", value)
    db = load_settings().bot_keys.db
    assert (db.password_value(), db.encryption_key_value()) == ("pw", KEY)


def test_a_driver_that_is_not_postgresql_is_refused(pg_db, tmp_path, monkeypatch):
    path = service_config(tmp_path, pg_db)
    path.write_text(path.read_text().replace("postgresql+asyncpg", "mysql"))
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(path))
    with pytest.raises(ConfigError, match="DB_DRIVER"):
        load_settings()


def test_migrate_store_both_ways_from_the_command_line(aws, pg_db, tmp_path, monkeypatch, capsys):
    from rotator.keystore.secretsmanager import SecretsManagerStore

    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(service_config(tmp_path, pg_db)))
    monkeypatch.setenv("ROTATOR_BOT_KEYS__STORE", "secretsmanager")
    iam = aws.client("iam")
    make_user(iam, BOT1, TAG)
    sm_store = SecretsManagerStore(aws.client("secretsmanager"), prefix=f"gen3wf-rotator/{HOST}/bot-keys/")
    older = make_key(iam, BOT1, created=utcnow() - days(10), store=sm_store)
    newer = make_key(iam, BOT1, created=utcnow() - days(2), store=sm_store)
    code, out, err = run_cli(capsys, "migrate-store", "--from", "secretsmanager", "--to", "gen3workflow-db")
    assert code == 0 and "dry-run: nothing was changed" in out
    assert newest_row(pg_db, "1") is None
    code, out, err = run_cli(capsys, "migrate-store", "--from", "secretsmanager", "--to", "gen3workflow-db", "--apply", "--output", "json")
    assert code == 0, err
    assert newest_row(pg_db, "1") == (newer.key_id, newer.secret)  # the service now hands out the newest key
    assert newer.secret not in out + err and older.secret not in out + err
    # and back, into an empty Secrets Manager store
    aws.client("secretsmanager").delete_secret(SecretId=f"gen3wf-rotator/{HOST}/bot-keys/{BOT1}", ForceDeleteWithoutRecovery=True)
    code, out, err = run_cli(capsys, "migrate-store", "--from", "gen3workflow-db", "--to", "secretsmanager", "--apply")
    assert code == 0, err
    assert sm_store.first_key_id(BOT1) == newer.key_id and sm_store.stored_key_ids(BOT1) == {older.key_id, newer.key_id}
    code, out, err = run_cli(capsys, "migrate-store", "--from", "gen3workflow-db", "--to", "secretsmanager", "--delete-source")
    assert code == 2 and "--delete-source" in err  # the service's rows are never deleted
