"""The job registry is the one list of jobs: the CLI, the settings and the chart follow it."""

import json
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from rotator import cli
from rotator.jobs import JOB_NAMES, REGISTRY, get_job, setting_key
from rotator.settings import ScheduleSettings, _known_env_names

CHART = Path(__file__).parent.parent / "helm" / "rotator"


def camel(job_name: str) -> str:
    first, *rest = job_name.split("-")
    return first + "".join(part.title() for part in rest)


def test_every_job_has_the_parts_of_a_job():
    assert len(set(JOB_NAMES)) == len(JOB_NAMES)
    for job in REGISTRY:
        assert get_job(job.name) is job
        assert job.permissions and all(p.count(":") == 1 for p in job.permissions)
        for part in ("prepare", "observe", "plan", "execute", "record_metrics", "describe"):
            assert callable(getattr(job, part)), (job.name, part)
    with pytest.raises(KeyError, match="unknown job"):
        get_job("no-such-job")


def test_cli_choices_and_schedules_come_from_the_registry():
    parser = cli.build_parser()
    plan = next(a for a in parser._subparsers._group_actions[0].choices["plan"]._actions if a.dest == "job")
    assert tuple(plan.choices) == JOB_NAMES
    assert ScheduleSettings().expressions() == {job.name: job.default_schedule for job in REGISTRY}
    for job in REGISTRY:
        assert f"ROTATOR_SCHEDULE__{setting_key(job.name).upper()}" in _known_env_names()


def test_chart_values_and_schema_cover_every_job():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    schedule_schema = schema["properties"]["schedule"]["properties"]
    for job in REGISTRY:
        assert values["schedule"][camel(job.name)] == job.default_schedule, job.name
        assert camel(job.name) in schedule_schema, job.name


def test_chart_env_names_are_settings_and_carry_every_schedule():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values.update(mode="deployment", hostname="data.example.org")
    manifests = helm.Chart.load(CHART).render(values=values, name="rotator", namespace="gen3")
    env = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    env.update({e["name"]: e.get("value") for e in container.get("env", [])})
    known = _known_env_names()
    assert {name for name in env if name.startswith("ROTATOR_")} <= known
    for job in REGISTRY:
        assert env[f"ROTATOR_SCHEDULE__{setting_key(job.name).upper()}"] == job.default_schedule
