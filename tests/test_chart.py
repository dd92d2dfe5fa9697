"""The helm chart, rendered and linted by Helm's own library, validated against Kubernetes schemas."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import require_binary
from rotator import __version__
from rotator.settings import load_settings

ROOT = Path(__file__).parent.parent
CHART = ROOT / "helm" / "rotator"
SIDECAR = ROOT / "helm" / "sidecar" / "rotator-sidecar.yaml"
sys.path.insert(0, str(ROOT / "scripts"))
import chart_readme  # noqa: E402

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
    assert pod["enableServiceLinks"] is False  # no ROTATOR_* variables for a Service named rotator...
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
    assert "names no registry" in notes  # the default image.repository cannot be pulled by a cluster
    _, manifests = render(chart, {"hostname": "data.example.org", "image": {"repository": "registry.example.org/gen3wf-rotator"}})
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "names no registry" not in notes


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


EXTRAS = {
    "hostname": "data.example.org",
    "mode": "deployment",
    "namespaceOverride": "gen3-ops",
    "extraVolumes": [{"name": "tes-token", "secret": {"secretName": "funnel-token"}},
                     {"name": "corporate-ca", "configMap": {"name": "corporate-ca"}}],
    "extraVolumeMounts": [{"name": "tes-token", "mountPath": "/var/run/secrets/tes", "readOnly": True},
                          {"name": "corporate-ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
    "extraEnv": [{"name": "ROTATOR_RUN_SECRETS__TES__TOKEN_FILE", "value": "/var/run/secrets/tes/token"},
                 {"name": "AWS_CA_BUNDLE", "value": "/etc/ssl/corporate/ca.pem"}],
    "podAnnotations": {"example.org/owner": "gen3-ops"},
    "podLabels": {"app": "gen3job"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "role", "operator": "Equal", "value": "workflow", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}]}]}}},
    "priorityClassName": "gen3-critical",
    "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True},
}


@pytest.mark.parametrize("mode", ["cronjob", "deployment"])
def test_extra_volumes_scheduling_and_metadata_values(chart, mode):
    docs, _ = render(chart, {**EXTRAS, "mode": mode})
    for doc in docs:
        assert doc["metadata"]["namespace"] == "gen3-ops", doc["kind"]  # namespaceOverride, on every object
        if not doc["apiVersion"].startswith(CRD_GROUPS):
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
    pod, workload = _container(docs)
    template = workload["spec"]["jobTemplate"]["spec"]["template"] if mode == "cronjob" else workload["spec"]["template"]
    assert template["metadata"]["annotations"] == {"example.org/owner": "gen3-ops"}
    assert template["metadata"]["labels"]["app"] == "gen3job"
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "rotator"
    if mode == "deployment":  # extra pod labels never enter the selector (immutable after install)
        assert "app" not in workload["spec"]["selector"]["matchLabels"]
    assert pod["nodeSelector"] == EXTRAS["nodeSelector"]
    assert pod["tolerations"] == EXTRAS["tolerations"] and pod["affinity"] == EXTRAS["affinity"]
    assert pod["priorityClassName"] == "gen3-critical"
    assert {v["name"] for v in pod["volumes"]} == {"tmp", "tes-token", "corporate-ca"}
    container = pod["containers"][0]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/var/run/secrets/tes", "/etc/ssl/corporate"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROTATOR_RUN_SECRETS__TES__TOKEN_FILE"] == "/var/run/secrets/tes/token"


def test_optional_pod_fields_are_absent_by_default(chart):
    docs, _ = render(chart, {"hostname": "data.example.org"})
    pod, cronjob = _container(docs)
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(pod)
    assert "annotations" not in cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    assert all(d["metadata"]["namespace"] == "gen3" for d in docs)


@pytest.mark.parametrize(
    "values",
    [
        {"hostname": "data.example.org", "extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]},
        {"hostname": "data.example.org", "extraVolumes": [{"secret": {"secretName": "x"}}]},  # no name
        {"hostname": "data.example.org", "namespaceOverride": "Not_A_Namespace"},
        {"hostname": "data.example.org", "tolerations": ["NoSchedule"]},
    ],
)
def test_schema_rejects_bad_extra_values(chart, values):
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


def test_every_value_is_documented_and_in_the_schema():
    rows = chart_readme.parse((CHART / "values.yaml").read_text())  # raises on an undocumented value
    schema = json.loads((CHART / "values.schema.json").read_text())
    for row in rows:
        node = schema
        for part in row.key.split("."):
            assert part in node.get("properties", {}), f"{row.key} is not in values.schema.json"
            node = node["properties"][part]
        assert row.description, row.key


def test_chart_readme_is_generated_and_current():
    current = (CHART / "README.md").read_text()
    assert current == chart_readme.render(), "helm/rotator/README.md is stale: run python3 scripts/chart_readme.py"
    for key in ("extraVolumes", "extraVolumeMounts", "podAnnotations", "podLabels", "nodeSelector", "tolerations", "affinity",
                "priorityClassName", "namespaceOverride", "image.repository", "allowedAccountIds"):
        assert f"| `{key}` |" in current, key


def test_chart_readme_generator_refuses_an_undocumented_value():
    with pytest.raises(chart_readme.UndocumentedValue, match="image.tag"):
        chart_readme.parse("# -- documented\nmode: cronjob\nimage:\n  # -- yes\n  repository: x\n  tag: ''\n")


def test_one_image_name_for_make_the_chart_and_the_sidecar():
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_yaml["appVersion"] == __version__
    default_image = f"{values['image']['repository']}:{values['image']['tag'] or chart_yaml['appVersion']}"
    assert default_image == f"gen3wf-rotator:{__version__}"
    assert yaml.safe_load(SIDECAR.read_text())["image"] == default_image
    make = require_binary("make")

    def built_image(*args):
        out = subprocess.run([make, "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return re.findall(r"^docker (?:build .* -t|push) (\S+)", out.stdout, flags=re.M)

    assert built_image("image") == [default_image]
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert built_image("push", f"REGISTRY={registry}/") == [f"{registry}/{default_image}"] * 2  # built, then pushed
