"""``rotator demo --store gen3workflow-db``, run as an operator would: a throwaway PostgreSQL from the installed
binaries holds gen3-workflow's ``system_key`` table, rotator runs from the service's config file alone, and the
service's rule (the newest row of each bot user) hands out a live key at the end. Without PostgreSQL: exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pg
import pytest

DEMO = [sys.executable, "-m", "rotator", "demo", "--store", "gen3workflow-db"]
# What a secret would look like in the output: an AWS secret access key, a Fernet key, the demo's database password.
SECRET_SHAPES = (r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", r"[A-Za-z0-9_-]{43}=", r"demo-[A-Za-z0-9_-]{24}")


def demo_environment() -> dict[str, str]:
    """The operator's shell: no ROTATOR_* or AWS_* settings (the demo brings its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "AWS_"))}


def blocks(output: str) -> dict[str, str]:
    """The demo's sections, by their `== ` heading."""
    parts = re.split(r"^== (.*)$", output, flags=re.M)
    return {heading: body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def system_key_rows(section: str) -> list[list[str]]:
    """The printed ``system_key`` table of a section: user_id, key_id, created date, time, key_secret words."""
    table = section[section.index("system_key.user_id"):].strip().splitlines()[1:]
    return [line.split(None, 4) for line in table if line.strip()]


@pytest.fixture(scope="module")
def demo_run() -> subprocess.CompletedProcess:
    pg.bindir()  # skipped on a laptop without PostgreSQL's binaries, failed in CI (like every PostgreSQL test)
    return subprocess.run(DEMO, env=demo_environment(), capture_output=True, text=True, timeout=300)


def test_demo_runs_the_bot_keys_job_end_to_end_on_the_services_table(demo_run):
    assert demo_run.returncode == 0, demo_run.stdout[-4000:] + demo_run.stderr[-4000:]
    sections = blocks(demo_run.stdout)
    headings = list(sections)
    assert headings[0].startswith("throwaway PostgreSQL at 127.0.0.1:")
    assert "its DB_* and ENCRYPTION_KEY make the bot-key store gen3workflow-db" in headings[1]
    seeded = sections[headings[2]]
    assert "stored bot keys: rows the service wrote in system_key" in headings[2]
    assert "IN system_key" in seeded  # the store column is the service's table
    before = system_key_rows(seeded)
    assert {row[0] for row in before} == {"102", "103", "104", "105", "106"}  # 101 has no key yet; decoys have no rows

    end = next(body for heading, body in sections.items() if heading.startswith("end state"))
    after = system_key_rows(end)
    by_user: dict[str, list[str]] = {}
    for user_id, key_id, _date, _time, secret in after:
        by_user.setdefault(user_id, []).append(key_id)
        assert secret == "Fernet token: decrypts with ENCRYPTION_KEY"
    assert {user: len(keys) for user, keys in by_user.items()} == dict.fromkeys(("101", "102", "103", "104", "105", "106"), 2)
    for user_id, keys in by_user.items():  # the row the service hands out is the key marked so in the users' table
        assert re.search(rf"-{user_id}-bot\s+{keys[0]}\s+\S+\s+Active\s+stored, handed out", end), user_id
    assert "not stored" not in end  # the orphan (106's unstored key) is gone
    assert any(h.endswith("hands every bot user its newest row: a live key for each") for h in headings)

    second = sections["second run: nothing left to do"]
    assert "nothing to do" in second
    for job in ("user-keys", "bot-keys", "run-secrets"):
        assert f"{job}: success" in second


def test_demo_never_prints_a_secret(demo_run):
    assert demo_run.returncode == 0, demo_run.stderr[-4000:]
    for shape in SECRET_SHAPES:
        assert not re.search(shape, demo_run.stdout + demo_run.stderr), shape


def test_demo_without_postgresql_exits_2_naming_the_debian_package(tmp_path):
    """A machine without PostgreSQL: no /usr/lib/postgresql/*/bin and nothing on PATH."""
    without_postgresql = (
        "import glob, sys\n"
        "found = glob.glob\n"
        "glob.glob = lambda pattern, **kw: [] if 'postgresql' in pattern else found(pattern, **kw)\n"
        "from rotator.cli import main\n"
        "sys.exit(main(['demo', '--store', 'gen3workflow-db']))\n"
    )
    env = {**demo_environment(), "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", without_postgresql], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("rotator: ") and "apt-get install postgresql" in line
