import pytest

from rotator.settings import ConfigError, load_settings


def test_defaults(monkeypatch):
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    s = load_settings()
    assert s.hostname == "gen3.example.org"
    assert s.dry_run is True
    assert s.user_keys.lifetime_days == 30 and s.bot_keys.lifetime_days == 30
    assert s.bot_secret_prefix == "gen3wf-rotator/gen3.example.org/bot-keys/"
    assert s.owner_tag == "gen3wf-gen3-example-org"
    assert s.safety.max_deletions == 500


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ROTATOR_USER_KEYS__LIFETIME_DAYS", "0", "ROTATOR_USER_KEYS__LIFETIME_DAYS"),
        ("ROTATOR_BOT_KEYS__LIFETIME_DAYS", "thirty", "ROTATOR_BOT_KEYS__LIFETIME_DAYS"),
        ("ROTATOR_SAFETY__MAX_DELETION_FRACTION", "0", "ROTATOR_SAFETY__MAX_DELETION_FRACTION"),
        ("ROTATOR_SAFETY__MAX_DELETION_FRACTION", "1.5", "ROTATOR_SAFETY__MAX_DELETION_FRACTION"),
        ("ROTATOR_ALLOWED_ACCOUNT_IDS", '["12345"]', "ROTATOR_ALLOWED_ACCOUNT_IDS"),
        ("ROTATOR_ALLOWED_ACCOUNT_IDS", "not json", "ROTATOR_ALLOWED_ACCOUNT_IDS"),
        ("ROTATOR_DRY_RUN", "maybe", "ROTATOR_DRY_RUN"),
        ("ROTATOR_BOT_KEYS__STORE", "vault", "ROTATOR_BOT_KEYS__STORE"),
        ("ROTATOR_LOG__FORMAT", "xml", "ROTATOR_LOG__FORMAT"),
        ("ROTATOR_RUN_SECRETS__RECOVERY_WINDOW_DAYS", "3", "ROTATOR_RUN_SECRETS__RECOVERY_WINDOW_DAYS"),
        ("ROTATOR_RUN_SECRETS__PATTERNS", '["^tower-(.*)$"]', "run_id"),
        ("ROTATOR_USER_KEYS__LIFETIME_DAY", "3", "unknown setting ROTATOR_USER_KEYS__LIFETIME_DAY"),
        ("ROTATOR_DRYRUN", "false", "unknown setting ROTATOR_DRYRUN"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ROTATOR_EXCLUDE_USERS", "bob", "ROTATOR_EXCLUDE_USERS: not valid JSON; expected a JSON list of IAM user names"),
        ("ROTATOR_RUN_SECRETS__PATTERNS", "^nf-run-", "ROTATOR_RUN_SECRETS__PATTERNS: not valid JSON; expected a JSON list of"
         " regular expressions with a (?P<run_id>...) group"),
        ("ROTATOR_RUN_SECRETS__REGIONS", "us-east-1", "ROTATOR_RUN_SECRETS__REGIONS: expected a JSON list of AWS regions,"
         " e.g. '[\"us-east-1\"]'"),
        ("ROTATOR_RUN_SECRETS__SEQERA__WORKSPACE_IDS", "5", "ROTATOR_RUN_SECRETS__SEQERA__WORKSPACE_IDS: expected a JSON"
         " list of Seqera workspace ids"),
        ("ROTATOR_AWS__CONCURRENCY", "eight", "ROTATOR_AWS__CONCURRENCY: expected a whole number"),
        ("ROTATOR_DRY_RUN", "maybe", "ROTATOR_DRY_RUN: expected true or false"),
    ],
)
def test_bad_values_say_the_expected_form(monkeypatch, name, value, expected):
    """The variable, then what it should look like: never pydantic's words ("Input should be a valid list")."""
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert expected in str(info.value)
    assert "Input should be" not in str(info.value) and value not in str(info.value).replace(expected, "")


@pytest.mark.parametrize(
    "name",
    ["ROTATOR_METRICS__PUSHGATEWAY_URL", "ROTATOR_RUN_SECRETS__SEQERA__URL", "ROTATOR_RUN_SECRETS__TES__URL"],
)
def test_urls_with_credentials_are_refused_without_echoing_them(monkeypatch, name):
    """Credentials in a URL would show wherever the URL does (rotator config, logs): they go in files."""
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    path = {"ROTATOR_RUN_SECRETS__TES__URL": "/ga4gh/tes/v1", "ROTATOR_RUN_SECRETS__SEQERA__URL": "/api"}.get(name, "")
    monkeypatch.setenv(name, f"https://admin:hunter2-pw@service.example.org{path}")
    with pytest.raises(ConfigError, match=f"{name}: must not hold credentials") as info:
        load_settings()
    assert "hunter2-pw" not in str(info.value)


def test_hostname_is_required_and_validated(monkeypatch):
    with pytest.raises(ConfigError, match="ROTATOR_HOSTNAME: required"):
        load_settings()
    monkeypatch.setenv("ROTATOR_HOSTNAME", "not a host/")
    with pytest.raises(ConfigError, match="ROTATOR_HOSTNAME"):
        load_settings()


def test_tokens_are_never_echoed(monkeypatch):
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv("ROTATOR_METRICS__PORT", "s3cr3t-t0ken-value")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "s3cr3t-t0ken-value" not in str(info.value)


def test_gen3workflow_config_fills_gaps_and_ours_win(monkeypatch, tmp_path):
    config = tmp_path / "gen3-workflow-config.yaml"
    config.write_text("HOSTNAME: commons.example.net\nIAM_KEYS_LIFETIME_DAYS: 14\nENCRYPTION_KEY: xyz\nDB_HOST: db\n")
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(config))
    s = load_settings()
    assert s.hostname == "commons.example.net"
    assert s.user_keys.lifetime_days == 14
    assert s.bot_keys.lifetime_days == 30  # the service's lifetime is for end-user keys only

    monkeypatch.setenv("ROTATOR_USER_KEYS__LIFETIME_DAYS", "21")
    monkeypatch.setenv("ROTATOR_HOSTNAME", "override.example.net")
    s = load_settings()
    assert (s.hostname, s.user_keys.lifetime_days) == ("override.example.net", 21)
    monkeypatch.setenv("ROTATOR_USER_KEYS__DELETE_INACTIVE", "false")
    assert load_settings().user_keys.lifetime_days == 21  # nested values from both sources merge


def test_bad_value_in_gen3workflow_config_says_where_it_came_from(monkeypatch, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("HOSTNAME: commons.example.net\nIAM_KEYS_LIFETIME_DAYS: -1\n")
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"ROTATOR_USER_KEYS__LIFETIME_DAYS \(from IAM_KEYS_LIFETIME_DAYS in .*c.yaml\)"):
        load_settings()


@pytest.mark.parametrize("content", ["- a list\n", "key: [unclosed\n"])
def test_unusable_gen3workflow_config(monkeypatch, tmp_path, content):
    config = tmp_path / "c.yaml"
    config.write_text(content)
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(config))
    with pytest.raises(ConfigError, match="ROTATOR_GEN3WORKFLOW_CONFIG"):
        load_settings()
    monkeypatch.setenv("ROTATOR_GEN3WORKFLOW_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings()
