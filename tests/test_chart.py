"""The helm chart, rendered and linted by Helm's own library, validated against Kubernetes schemas."""

import copy
import json
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from rotator.settings import load_settings

CHART = Path(__file__).parent.parent / "helm" / "rotator"
SIDECAR = Path(__file__).parent.parent / "helm" / "sidecar" / "rotator-sidecar.yaml"
SCENARIOS = sorted(CHART.glob("ci/*-values.yaml"))
KUBE_VERSIONS = ("1.29.0", "1.37.0")
CRD_GROUPS = ("monitoring.coreos.com/",)


@pytest.fixture(scope="module")
def chart():
    return helm.Chart.load(CHART)


def render(chart, values):
    manifests = chart.render(values=values, name="rotator", namespace="gen3")
    docs = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs, manifests


def values_of(path):
    return yaml.safe_load(path.read_text()) or {}


def test_there_is_a_scenario_per_mode():
    modes = {values_of(p).get("mode", "cronjob") for p in SCENARIOS}
    assert modes == {"cronjob", "deployment"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_lint_is_clean(scenario):
    report = helm.lint(str(CHART), values_of(scenario), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert report["total_charts_linted"] == 1
    assert problems == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_rendered_manifests_validate_strictly(chart, scenario, kube_version):
    docs, _ = render(chart, values_of(scenario))
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue  # no schema for CRDs in kubernetes-validate; checked below
        kubernetes_validate.validate(doc, kube_version, strict=True)


def _container(docs):
    for doc in docs:
        if doc["kind"] == "CronJob":
            return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"], doc
        if doc["kind"] == "Deployment":
            return doc["spec"]["template"]["spec"], doc
    raise AssertionError("no workload")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_hardened_pod(chart, scenario):
    docs, _ = render(chart, values_of(scenario))
    pod, _ = _container(docs)
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_rendered_environment_is_valid_rotator_configuration(chart, scenario, monkeypatch, tmp_path):
    """Every variable the chart sets is one rotator knows, with a value it accepts."""
    docs, _ = render(chart, values_of(scenario))
    pod, _ = _container(docs)
    for var in pod["containers"][0]["env"]:
        value = var.get("value")
        if "valueFrom" in var:
            value = "from-a-kubernetes-secret"
        if var["name"] == "ROTATOR_GEN3WORKFLOW_CONFIG":
            config = tmp_path / "gen3-workflow-config.yaml"
            config.write_text("HOSTNAME: data.example.org\nIAM_KEYS_LIFETIME_DAYS: 30\n")
            value = str(config)
        monkeypatch.setenv(var["name"], value)
    settings = load_settings()
    assert settings.hostname == "data.example.org"


def test_cronjob(chart):
    docs, _ = render(chart, values_of(CHART / "ci/cronjob-values.yaml"))
    pod, cronjob = _container(docs)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 1
    assert cronjob["spec"]["successfulJobsHistoryLimit"] == 3
    assert pod["containers"][0]["args"] == ["run", "--apply", "--job", "user-keys", "--job", "bot-keys"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ROTATOR_METRICS__PUSHGATEWAY_URL"] == "http://prometheus-pushgateway.monitoring:9091"
    assert env["ROTATOR_ALLOWED_ACCOUNT_IDS"] == '["123456789012"]'
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/gen3wf-rotator"
    assert not any(d["kind"] in ("Deployment", "Service", "ServiceMonitor") for d in docs)


def test_deployment_with_monitoring(chart):
    docs, _ = render(chart, values_of(CHART / "ci/deployment-values.yaml"))
    pod, deployment = _container(docs)
    assert deployment["spec"]["replicas"] == 1
    container = pod["containers"][0]
    assert container["args"] == ["serve"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    token = next(e for e in container["env"] if e["name"] == "ROTATOR_RUN_SECRETS__SEQERA__TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "seqera-token", "key": "token"}
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files/prometheus-rules.yaml").read_text())
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["rotator.json"])["uid"] == "gen3wf-rotator"


def test_optional_features_are_off_by_default(chart):
    docs, _ = render(chart, {"hostname": "data.example.org"})
    assert sorted(d["kind"] for d in docs) == ["CronJob", "ServiceAccount"]
    pod, _ = _container(docs)
    assert pod["containers"][0]["args"] == ["run"]  # dry-run by default


def test_notes_warn_when_dry_run_is_on(chart):
    _, manifests = render(chart, {"hostname": "data.example.org"})
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "WARNING: dry-run is ON" in notes
    _, manifests = render(chart, {"hostname": "data.example.org", "dryRun": False})
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "dry-run is ON" not in notes


@pytest.mark.parametrize(
    "values",
    [
        {"hostname": "data.example.org", "mode": "daemonset"},
        {"hostname": "data.example.org", "runSecrets": {"seqera": {"token": "plaintext-token"}}},  # tokens never in values
        {"hostname": "data.example.org", "unknownKey": 1},
        {"hostname": "data.example.org", "allowedAccountIds": ["12345"]},
        {"hostname": "data.example.org", "safety": {"maxDeletionFraction": 2}},
        {"hostname": "data.example.org", "runSecrets": {"recoveryWindowDays": 3}},
        {"hostname": ""},  # neither a hostname nor gen3-workflow's config
    ],
)
def test_schema_rejects_bad_values(chart, values):
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_sidecar_container_spec_validates_in_a_pod(kube_version):
    container = yaml.safe_load(SIDECAR.read_text())
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gen3-workflow"},
        "spec": {
            "containers": [{"name": "gen3-workflow", "image": "gen3-workflow:latest"}, copy.deepcopy(container)],
            "volumes": [
                {"name": "config-volume", "secret": {"secretName": "gen3workflow-g3auto"}},
                {"name": "rotator-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    }
    kubernetes_validate.validate(pod, kube_version, strict=True)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ROTATOR_GEN3WORKFLOW_CONFIG"] == "/src/gen3-workflow-config.yaml"
    assert container["args"] == ["serve"]
