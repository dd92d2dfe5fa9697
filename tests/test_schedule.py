from datetime import UTC, datetime, timedelta

import pytest

from rotator.schedule import cron_trigger
from rotator.settings import ConfigError, load_settings

SUNDAY = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 3 * * *", SUNDAY, datetime(2026, 11, 23, 3, tzinfo=UTC)),
        ("10 3 * * *", datetime(2026, 11, 23, 3, 5, tzinfo=UTC), datetime(2026, 11, 23, 3, 10, tzinfo=UTC)),
        ("0 3 * * 1-5", SUNDAY, datetime(2026, 11, 23, 3, tzinfo=UTC)),  # crontab 1 = Monday
        ("0 3 * * 0", datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 29, 3, tzinfo=UTC)),  # 0 = Sunday
        ("0 3 * * 7", datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 29, 3, tzinfo=UTC)),  # 7 = Sunday too
        ("0 3 * * sat", SUNDAY, datetime(2026, 11, 28, 3, tzinfo=UTC)),
        ("*/15 * * * *", SUNDAY + timedelta(minutes=1), datetime(2026, 11, 22, 12, 15, tzinfo=UTC)),
        ("0 0 1 * *", SUNDAY, datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_next_fire_time_in_utc(expression, after, expected):
    assert cron_trigger(expression).get_next_fire_time(None, after) == expected


def test_jitter_is_bounded():
    trigger = cron_trigger("0 3 * * *", jitter_seconds=60)
    base = datetime(2026, 11, 23, 3, tzinfo=UTC)
    for _ in range(50):
        fire = trigger.get_next_fire_time(None, SUNDAY)
        assert base <= fire <= base + timedelta(seconds=60)


@pytest.mark.parametrize("expression", ["0 3 * *", "61 3 * * *", "0 3 * * 8", "every day", "0 25 * * *"])
def test_invalid_crontab_is_a_config_error(monkeypatch, expression):
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv("ROTATOR_SCHEDULE__BOT_KEYS", expression)
    with pytest.raises(ConfigError, match="ROTATOR_SCHEDULE__BOT_KEYS"):
        load_settings()


def test_empty_schedule_disables_the_job(monkeypatch):
    monkeypatch.setenv("ROTATOR_HOSTNAME", "gen3.example.org")
    monkeypatch.setenv("ROTATOR_SCHEDULE__RUN_SECRETS", "")
    assert load_settings().schedule.expressions() == {"user-keys": "0 3 * * *", "bot-keys": "10 3 * * *"}
