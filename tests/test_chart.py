"""The helm chart, rendered and linted by Helm's own library, validated against Kubernetes schemas."""

import copy
import json
import re
import shlex
import shutil
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
CRD_GROUPS = ("monitoring.coreos.com/", "iam.aws.crossplane.io/")
UMBRELLA = Path(__file__).parent / "fixtures" / "umbrella"


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


# gen3-workflow's config as gen3-helm renders it today, and as the service keeping its bot keys in its
# own table has it (DB_* and ENCRYPTION_KEY: then rotator's default store is gen3workflow-db).
SERVICE_CONFIG = "HOSTNAME: data.example.org\nIAM_KEYS_LIFETIME_DAYS: 30\nDB_PASSWORD: x\nENCRYPTION_KEY: y\n"
SERVICE_CONFIG_WITH_DATABASE = (
    "HOSTNAME: data.example.org\nIAM_KEYS_LIFETIME_DAYS: 30\nDB_DRIVER: postgresql+asyncpg\nDB_HOST: gen3workflow-postgresql\n"
    "DB_PORT: 5432\nDB_USER: gen3workflow\nDB_PASSWORD: x\nDB_DATABASE: gen3workflow\nENCRYPTION_KEY: y\n"
)


def load_pod_settings(pod, monkeypatch, tmp_path, *, service_config=SERVICE_CONFIG):
    """rotator's settings from the container's exact environment, its mounted files made in tmp_path."""
    container = pod["containers"][0]
    mounts = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", []) if m["mountPath"] != "/tmp"]
    for var in container["env"]:
        value = var.get("value")
        if "valueFrom" in var:
            value = "from-a-kubernetes-secret"
        if var["name"] == "ROTATOR_GEN3WORKFLOW_CONFIG":
            config = tmp_path / "gen3-workflow-config.yaml"
            config.write_text(service_config)
            value = str(config)
        elif value and any(value.startswith(m) for m in mounts):
            mounted = tmp_path / value.lstrip("/")
            mounted.parent.mkdir(parents=True, exist_ok=True)
            mounted.write_text("secret-from-a-mounted-file\n")
            value = str(mounted)
        monkeypatch.setenv(var["name"], value)
    return load_settings()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_rendered_environment_is_valid_rotator_configuration(chart, scenario, monkeypatch, tmp_path):
    """Every variable the chart sets is one rotator knows, with a value it accepts."""
    docs, _ = render(chart, values_of(scenario))
    pod, _ = _container(docs)
    settings = load_pod_settings(pod, monkeypatch, tmp_path, service_config=SERVICE_CONFIG_WITH_DATABASE)
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
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE"] == "/var/run/secrets/rotator/seqera-token/token"
    assert "ROTATOR_RUN_SECRETS__SEQERA__TOKEN" not in env
    assert env["ROTATOR_METRICS__BIND_ADDRESS"] == "0.0.0.0"
    volume = next(v for v in pod["volumes"] if v["name"] == "seqera-token")
    assert volume["secret"]["secretName"] == "seqera-token" and volume["secret"]["items"] == [{"key": "token", "path": "token"}]
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files/prometheus-rules.yaml").read_text())
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rotator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["rotator.json"])["uid"] == "gen3wf-rotator"


def test_optional_features_are_off_by_default(chart):
    docs, _ = render(chart, {"hostname": "data.example.org"})
    # the IAM policy's ConfigMap is no feature but the role's documentation: on by default
    assert sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs) == [
        "ConfigMap/rotator-iam-policy", "CronJob/rotator", "ServiceAccount/rotator"]
    pod, _ = _container(docs)
    assert pod["containers"][0]["args"] == ["run"]  # dry-run by default
    docs, _ = render(chart, {"hostname": "data.example.org", "iamPolicy": {"configMap": False}})
    assert sorted(d["kind"] for d in docs) == ["CronJob", "ServiceAccount"]


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
        {"hostname": "", "global": {"hostname": ""}},
        {"hostname": "data.example.org", "runSecrets": {"statusSource": "tes", "tes": {"url": "http://funnel:8000/ga4gh/tes/v1"}}},
        {"hostname": "data.example.org", "cronjob": {"pushgatewayUrl": "http://user:pass@pushgateway:9091"}},  # a Secret instead
        {"hostname": "data.example.org", "runSecrets": {"tes": {"basicAuthSecret": {"password": "plaintext"}}}},
        {"hostname": "data.example.org", "networkPolicy": {"metrics": {"from": [{}]}}},  # an empty peer admits everyone
        {"hostname": "data.example.org", "capacity": {"warnFraction": 1.5}},
        {"hostname": "data.example.org", "userKeys": {"lifetimeDays": 0}},
        {"hostname": "data.example.org", "botKeys": {"store": "postgresql"}},
        {"hostname": "data.example.org", "botKeys": {"db": {"password": "plaintext"}}},  # a Secret instead
        {"hostname": "data.example.org", "botKeys": {"db": {"secret": {"encryptionKey": "plaintext"}}}},
        {"hostname": "data.example.org", "botKeys": {"db": {"port": 0}}},
        {"hostname": "data.example.org", "botKeys": {"db": {"port": "5432"}}},
        {"hostname": "data.example.org", "botKeys": {"db": {"sslmode": "on"}}},
        {"hostname": "data.example.org", "botKeys": {"db": {"host": "db.example.org:5432"}}},  # the port has its own value
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


# --- tokens and passwords: files from existing Secrets, read at each run ------------------------

ALL_CREDENTIALS = {
    "hostname": "data.example.org",
    "runSecrets": {
        "statusSource": "seqera",
        "seqera": {"url": "https://seqera.example.org/api", "tokenSecret": {"name": "seqera-token", "key": "api-token"}},
        "tes": {"basicAuthSecret": {"name": "funnel-basic-auth"}},
    },
    "cronjob": {"pushgatewayUrl": "https://pushgateway.example.org", "pushgatewayAuthSecret": {"name": "pushgateway-auth"}},
}


def test_tokens_and_passwords_are_mounted_files_never_variables(chart, monkeypatch, tmp_path):
    docs, _ = render(chart, ALL_CREDENTIALS)
    pod, _ = _container(docs)
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    from_secrets = {name for name, e in env.items() if "valueFrom" in e}
    assert from_secrets == {"ROTATOR_RUN_SECRETS__TES__USERNAME", "ROTATOR_METRICS__PUSHGATEWAY_USERNAME"}  # user names only
    files = {name: e["value"] for name, e in env.items() if name.endswith("_FILE")}
    assert files == {
        "ROTATOR_RUN_SECRETS__SEQERA__TOKEN_FILE": "/var/run/secrets/rotator/seqera-token/token",
        "ROTATOR_RUN_SECRETS__TES__PASSWORD_FILE": "/var/run/secrets/rotator/tes-password/password",
        "ROTATOR_METRICS__PUSHGATEWAY_PASSWORD_FILE": "/var/run/secrets/rotator/pushgateway-password/password",
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in files.values():
        directory, file = path.rsplit("/", 1)
        mount = mounts[directory]
        assert mount["readOnly"] is True and "subPath" not in mount  # a subPath mount never sees a rotated Secret
        secret = volumes[mount["name"]]["secret"]
        assert [item["path"] for item in secret["items"]] == [file]
        assert secret["defaultMode"] == 0o440  # the pod's group (fsGroup) reads it, nobody else
    assert volumes["seqera-token"]["secret"] == {"secretName": "seqera-token", "items": [{"key": "api-token", "path": "token"}],
                                                 "defaultMode": 0o440}
    assert volumes["pushgateway-password"]["secret"]["items"] == [{"key": "password", "path": "password"}]
    assert env["ROTATOR_METRICS__PUSHGATEWAY_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "pushgateway-auth", "key": "username"}
    for version in KUBE_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    # rotator accepts exactly this environment, and reads the token anew at each use
    settings = load_pod_settings(pod, monkeypatch, tmp_path)
    token_file = settings.run_secrets.seqera.token_file
    assert settings.run_secrets.seqera.token_value() == "secret-from-a-mounted-file"
    token_file.write_text("rotated-token\n")
    assert settings.run_secrets.seqera.token_value() == "rotated-token"


def test_tes_token_is_a_file_and_the_pushgateway_auth_only_goes_with_a_pushgateway(chart):
    docs, _ = render(chart, {"hostname": "data.example.org", "mode": "deployment",
                             "runSecrets": {"tes": {"url": "http://funnel:8000/ga4gh/tes/v1", "tokenSecret": {"name": "tes-token"}}},
                             "cronjob": {"pushgatewayAuthSecret": {"name": "pushgateway-auth"}}})
    pod, _ = _container(docs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ROTATOR_RUN_SECRETS__TES__TOKEN_FILE"] == "/var/run/secrets/rotator/tes-token/token"
    assert not any(name.startswith("ROTATOR_METRICS__PUSHGATEWAY") for name in env)  # serve pushes nothing
    assert {v["name"] for v in pod["volumes"]} == {"tmp", "tes-token"}


# --- gen3-workflow's config: read for two keys, never beside our own lifetime -------------------


def test_lifetime_from_gen3_workflows_config_or_from_values_never_both(chart):
    docs, _ = render(chart, {"gen3workflowConfig": {"secretName": "gen3workflow-g3auto"}})
    pod, _ = _container(docs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert "ROTATOR_USER_KEYS__LIFETIME_DAYS" not in env and "ROTATOR_HOSTNAME" not in env  # both from the service's file
    (config,) = [v for v in pod["volumes"] if v["name"] == "gen3workflow-config"]
    assert config["secret"]["items"] == [{"key": "gen3-workflow-config.yaml", "path": "gen3-workflow-config.yaml"}]
    docs, _ = render(chart, {"hostname": "data.example.org", "userKeys": {"lifetimeDays": 45}})
    pod, _ = _container(docs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ROTATOR_USER_KEYS__LIFETIME_DAYS"] == "45"
    with pytest.raises(helm.HelmRenderError, match=r"userKeys.lifetimeDays \(45\) and gen3workflowConfig.secretName \(gen3workflow-g3auto\)"):
        render(chart, {"gen3workflowConfig": {"secretName": "gen3workflow-g3auto"}, "userKeys": {"lifetimeDays": 45}})


# --- the bot-key store: gen3-workflow's own table, or Secrets Manager ----------------------------

DB_FROM_A_SECRET = {
    "hostname": "data.example.org", "mode": "deployment", "aws": {"region": "us-east-1"},
    "allowedAccountIds": ["123456789012"],
    "botKeys": {"store": "gen3workflow-db", "db": {
        "host": "gen3workflow.cluster-abc.us-east-1.rds.amazonaws.com", "port": 5433, "user": "gen3workflow",
        "database": "gen3workflow", "sslmode": "verify-full", "sslRootCert": {"configMapName": "rds-ca", "key": "global-bundle.pem"},
        "secret": {"name": "gen3workflow-db", "passwordKey": "db-password", "encryptionKeyKey": "fernet-key"}}},
}


def _sids(policy):
    return [statement["Sid"] for statement in policy["Statement"]]


def test_db_store_from_the_services_config_file_alone(chart, monkeypatch, tmp_path):
    docs, _ = render(chart, values_of(CHART / "ci/gen3workflow-db-values.yaml"))
    pod, _ = _container(docs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ROTATOR_BOT_KEYS__STORE"] == "gen3workflow-db"
    assert env["ROTATOR_GEN3WORKFLOW_CONFIG"] == "/etc/gen3-workflow/gen3-workflow-config.yaml"
    db_variables = {name for name in env if name.startswith("ROTATOR_BOT_KEYS__DB__")}
    assert db_variables == {"ROTATOR_BOT_KEYS__DB__SSLMODE"}  # connection, password and key: the service's file
    assert {v["name"] for v in pod["volumes"]} == {"tmp", "gen3workflow-config"}
    settings = load_pod_settings(pod, monkeypatch, tmp_path, service_config=SERVICE_CONFIG_WITH_DATABASE)
    db = settings.bot_keys.db
    assert settings.bot_keys.store == "gen3workflow-db"
    assert (db.host, db.port, db.user, db.database, db.sslmode) == ("gen3workflow-postgresql", 5432, "gen3workflow", "gen3workflow", "prefer")
    assert (db.password_value(), db.encryption_key_value()) == ("x", "y")
    policy = _iam_policy(docs)
    assert _sids(policy) == ["IdentityAndAccountWideReadsThatTakeNoResource", "Gen3WorkflowUserKeys",
                             "Gen3WorkflowBotKeyCreation", "RunSecrets"]  # no Secrets Manager store


def test_db_store_from_an_existing_secret(chart, monkeypatch, tmp_path):
    docs, _ = render(chart, DB_FROM_A_SECRET)
    for doc in docs:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    pod, _ = _container(docs)
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert not any("valueFrom" in e for e in env.values())
    db_env = {name: e["value"] for name, e in env.items() if name.startswith("ROTATOR_BOT_KEYS__DB__")}
    assert db_env == {
        "ROTATOR_BOT_KEYS__DB__HOST": "gen3workflow.cluster-abc.us-east-1.rds.amazonaws.com",
        "ROTATOR_BOT_KEYS__DB__PORT": "5433",
        "ROTATOR_BOT_KEYS__DB__USER": "gen3workflow",
        "ROTATOR_BOT_KEYS__DB__DATABASE": "gen3workflow",
        "ROTATOR_BOT_KEYS__DB__SSLMODE": "verify-full",
        "ROTATOR_BOT_KEYS__DB__SSLROOTCERT": "/etc/rotator/db-ca/root.crt",
        "ROTATOR_BOT_KEYS__DB__PASSWORD_FILE": "/var/run/secrets/rotator/db-password/password",
        "ROTATOR_BOT_KEYS__DB__ENCRYPTION_KEY_FILE": "/var/run/secrets/rotator/db-encryption-key/encryption-key",
    }
    assert "ROTATOR_GEN3WORKFLOW_CONFIG" not in env
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    for volume, key, file in (("db-password", "db-password", "password"), ("db-encryption-key", "fernet-key", "encryption-key")):
        assert volumes[volume]["secret"] == {"secretName": "gen3workflow-db", "items": [{"key": key, "path": file}], "defaultMode": 0o440}
        assert mounts[volume] == {"name": volume, "mountPath": f"/var/run/secrets/rotator/{volume}", "readOnly": True}  # no subPath
    assert volumes["db-ca"]["configMap"] == {"name": "rds-ca", "items": [{"key": "global-bundle.pem", "path": "root.crt"}]}
    assert mounts["db-ca"] == {"name": "db-ca", "mountPath": "/etc/rotator/db-ca", "readOnly": True}
    settings = load_pod_settings(pod, monkeypatch, tmp_path)
    db = settings.bot_keys.db
    assert settings.bot_keys.store == "gen3workflow-db"
    assert (db.host, db.port, db.sslmode) == ("gen3workflow.cluster-abc.us-east-1.rds.amazonaws.com", 5433, "verify-full")
    assert db.password_value() == db.encryption_key_value() == "secret-from-a-mounted-file"  # read from the files
    db.password_file.write_text("rotated-password\n")
    assert db.password_value() == "rotated-password"  # read at each use: a rotated Secret is picked up
    assert db.sslrootcert.is_file()
    assert "BotKeyStore" not in _sids(_iam_policy(docs))


def test_db_secret_wins_over_the_services_config_for_password_and_key(chart, monkeypatch, tmp_path):
    docs, _ = render(chart, {"gen3workflowConfig": {"secretName": "gen3workflow-g3auto"},
                             "botKeys": {"store": "gen3workflow-db", "db": {"secret": {"name": "gen3workflow-db"}}}})
    pod, _ = _container(docs)
    settings = load_pod_settings(pod, monkeypatch, tmp_path, service_config=SERVICE_CONFIG_WITH_DATABASE)
    db = settings.bot_keys.db
    assert db.host == "gen3workflow-postgresql"  # the rest from the service's file
    assert db.password_value() == db.encryption_key_value() == "secret-from-a-mounted-file"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"botKeys": {"store": "gen3workflow-db"}},
         r"botKeys.store is gen3workflow-db but nothing gives its database settings: set gen3workflowConfig.secretName"),
        ({"botKeys": {"store": "gen3workflow-db", "db": {"secret": {"name": "db"}, "host": "db.example.org"}}},
         r"set botKeys.db.user, botKeys.db.database too, or gen3workflowConfig.secretName"),
        ({"botKeys": {"db": {"host": "db.example.org"}}},
         r'botKeys.db.host: settings of the gen3workflow-db bot-key store, but botKeys.store is "": set botKeys.store'),
        ({"botKeys": {"store": "secretsmanager", "db": {"secret": {"name": "db"}, "sslRootCert": {"configMapName": "ca"}}}},
         r"botKeys.db.secret.name, botKeys.db.sslRootCert.configMapName: settings of the gen3workflow-db bot-key store, "
         r'but botKeys.store is "secretsmanager"'),
    ],
)
@pytest.mark.parametrize("mode", ["cronjob", "deployment"])
def test_db_store_settings_without_a_source_or_for_another_store_fail_to_render(chart, values, message, mode):
    chart.validate_schema({"hostname": "data.example.org", "mode": mode, **values})  # valid values: the chart explains
    with pytest.raises(helm.HelmRenderError, match=message):
        render(chart, {"hostname": "data.example.org", "mode": mode, **values})
    with pytest.raises(helm.HelmRenderError, match=message):  # the workload's environment checks it too
        render(chart, {"hostname": "data.example.org", "mode": mode, "iamPolicy": {"configMap": False}, **values})


def test_store_left_to_rotator_or_chosen_explicitly(chart, monkeypatch, tmp_path):
    """Empty: no variable, rotator chooses from the service's file (and the policy keeps the Secrets Manager
    store). Set: the variable, which wins over that choice."""
    base = {"hostname": "data.example.org", "gen3workflowConfig": {"secretName": "gen3workflow-g3auto"}}
    docs, manifests = render(chart, base)
    pod, _ = _container(docs)
    assert "ROTATOR_BOT_KEYS__STORE" not in {e["name"] for e in pod["containers"][0]["env"]}
    assert load_pod_settings(pod, monkeypatch, tmp_path, service_config=SERVICE_CONFIG_WITH_DATABASE).bot_keys.store == "gen3workflow-db"
    assert load_pod_settings(pod, monkeypatch, tmp_path).bot_keys.store == "secretsmanager"  # today's file: no DB_HOST
    assert "BotKeyStore" in _sids(_iam_policy(docs))
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "botKeys.store is empty" in notes
    docs, manifests = render(chart, {**base, "botKeys": {"store": "secretsmanager"}})
    pod, _ = _container(docs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ROTATOR_BOT_KEYS__STORE"] == "secretsmanager"
    assert load_pod_settings(pod, monkeypatch, tmp_path, service_config=SERVICE_CONFIG_WITH_DATABASE).bot_keys.store == "secretsmanager"
    assert "BotKeyStore" in _sids(_iam_policy(docs))
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "botKeys.store is empty" not in notes


def test_store_migration_statement_reads_and_deletes_the_old_store_only(chart):
    docs, _ = render(chart, {**DB_FROM_A_SECRET, "iamPolicy": {"storeMigration": True}})
    policy = _iam_policy(docs)
    assert "BotKeyStore" not in _sids(policy)
    (migration,) = [s for s in policy["Statement"] if s["Sid"] == "BotKeyStoreMigration"]
    assert migration["Action"] == ["secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"]
    assert migration["Resource"] == ["arn:aws:secretsmanager:us-east-1:123456789012:secret:gen3wf-rotator/data.example.org/bot-keys/*"]
    docs, _ = render(chart, {"hostname": "data.example.org"})
    assert "BotKeyStoreMigration" not in _sids(_iam_policy(docs))


def _readme_store_values():
    """The values blocks of the README's "Choosing a bot-key store"."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n### Choosing a bot-key store\n"):text.index("\n### Migrating between stores\n")]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S)]


@pytest.mark.parametrize("values", _readme_store_values(), ids=lambda v: "from-config" if "gen3workflowConfig" in v else "from-secret")
def test_readme_store_values_render_the_db_store(chart, values):
    docs, _ = render(chart, {"hostname": "data.example.org", **values})
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
    pod, _ = _container(docs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ROTATOR_BOT_KEYS__STORE"] == "gen3workflow-db"
    assert "BotKeyStore" not in _sids(_iam_policy(docs))


def test_network_policy_leaves_egress_to_the_database_open(chart):
    """The chart's NetworkPolicy restricts ingress only: the store's database stays reachable."""
    docs, _ = render(chart, {**DB_FROM_A_SECRET, "networkPolicy": {"enabled": True}})
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["policyTypes"] == ["Ingress"] and "egress" not in policy["spec"]


# --- NetworkPolicy: only the configured Prometheus reaches the metrics port ---------------------


def test_network_policy_admits_only_the_configured_prometheus(chart):
    values = {"hostname": "data.example.org", "mode": "deployment", "networkPolicy": {"enabled": True, "metrics": {"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}}}
    docs, _ = render(chart, values)
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(policy, version, strict=True)
    pod_labels = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress stays as the namespace has it
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == values["networkPolicy"]["metrics"]["from"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    port_names = {p["name"] for p in _container(docs)[0]["containers"][0]["ports"]}
    assert "metrics" in port_names
    # the defaults name kube-prometheus-stack's Prometheus in `monitoring`
    docs, _ = render(chart, {"hostname": "data.example.org", "mode": "deployment", "networkPolicy": {"enabled": True}})
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    with pytest.raises(helm.HelmRenderError, match="networkPolicy.metrics.from is empty"):
        render(chart, {"hostname": "data.example.org", "mode": "deployment", "networkPolicy": {"enabled": True, "metrics": {"from": []}}})


def test_network_policy_of_a_cronjob_admits_nothing_and_is_off_by_default(chart):
    docs, _ = render(chart, {"hostname": "data.example.org", "networkPolicy": {"enabled": True}})
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["ingress"] == [] and policy["spec"]["policyTypes"] == ["Ingress"]
    kubernetes_validate.validate(policy, KUBE_VERSIONS[-1], strict=True)
    docs, _ = render(chart, {"hostname": "data.example.org", "mode": "deployment"})
    assert not any(d["kind"] == "NetworkPolicy" for d in docs)


# --- the IAM policy the chart renders for its hostname --------------------------------------------


def _iam_policy(docs):
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-iam-policy")]
    return json.loads(configmap["data"]["iam-policy.json"])


def test_iam_policy_configmap_is_rendered_for_the_hostname_only(chart):
    docs, _ = render(chart, values_of(CHART / "ci/cronjob-values.yaml"))
    policy = _iam_policy(docs)
    conditions = [s["Condition"] for s in policy["Statement"] if "Condition" in s]
    assert conditions == [{"StringEquals": {"aws:ResourceTag/name": "gen3wf-data-example-org"}}] * 2
    resources = [r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    assert "arn:aws:secretsmanager:us-east-1:123456789012:secret:gen3wf-rotator/data.example.org/bot-keys/*" in resources
    assert "arn:aws:iam::123456789012:user/gen3wf-*-bot" in resources
    docs, manifests = render(chart, {"gen3workflowConfig": {"secretName": "gen3workflow-g3auto"}})
    assert not any(d["kind"] == "ConfigMap" for d in docs)  # the hostname is in the service's file only
    notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    assert "renders no IAM policy" in notes


# --- gen3-helm: rotator as a subchart of the umbrella chart -------------------------------------


@pytest.fixture(scope="module")
def umbrella(tmp_path_factory):
    """The umbrella fixture with helm/rotator under charts/, as `helm dependency update` leaves it."""
    root = tmp_path_factory.mktemp("umbrella") / "gen3"
    shutil.copytree(UMBRELLA, root)
    shutil.copytree(CHART, root / "charts" / "rotator", ignore=shutil.ignore_patterns("README*", "ci"))
    return root


def render_umbrella(umbrella, values):
    """Objects the umbrella renders (Helm drops disabled subcharts from a loaded chart: load it anew)."""
    manifests = helm.Chart.load(umbrella).render(values=values, name="gen3", namespace="gen3")
    docs = [d for path, text in manifests.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if not doc["apiVersion"].startswith(CRD_GROUPS):
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
    return docs


def _env(docs):
    pod, _ = _container(docs)
    return {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}


GEN3_LABELS = {"app.kubernetes.io/name": "rotator", "app.kubernetes.io/instance": "gen3", "app": "rotator",
               "release": "production", "app.kubernetes.io/part-of": "Workflow_Execution", "critical-service": "false"}


def test_umbrella_fixture_is_gen3_helms_shape():
    chart_yaml = yaml.safe_load((UMBRELLA / "Chart.yaml").read_text())
    assert chart_yaml["dependencies"] == [
        {"name": "rotator", "version": "*", "repository": "file://../../../helm/rotator", "condition": "rotator.enabled"}]
    assert (UMBRELLA / yaml.safe_load((UMBRELLA / "Chart.yaml").read_text())["dependencies"][0]["repository"]
            .removeprefix("file://") / "Chart.yaml").resolve() == CHART / "Chart.yaml"
    values = yaml.safe_load((UMBRELLA / "values.yaml").read_text())
    assert {"hostname", "environment", "dev", "metricsEnabled", "netPolicy", "aws", "crossplane", "externalSecrets"} <= set(values["global"])
    assert values["rotator"] == {"enabled": False}


def test_umbrella_with_only_enabled_true_renders_a_working_cronjob(umbrella, monkeypatch, tmp_path):
    docs = render_umbrella(umbrella, {"rotator": {"enabled": True}})
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "CronJob", "ServiceAccount"]
    env = _env(docs)
    assert env["ROTATOR_HOSTNAME"] == "data.example.org" and env["AWS_REGION"] == "us-east-1"  # from global
    assert "ROTATOR_ALLOWED_ACCOUNT_IDS" not in env  # crossplane off: gen3-helm's accountId may be its placeholder
    for doc in docs:
        assert GEN3_LABELS.items() <= doc["metadata"]["labels"].items(), doc["kind"]
    pod, cronjob = _container(docs)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert GEN3_LABELS.items() - {("app.kubernetes.io/part-of", "Workflow_Execution"), ("critical-service", "false")} <= \
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"].items()
    assert load_pod_settings(pod, monkeypatch, tmp_path).hostname == "data.example.org"
    assert _iam_policy(docs)["Statement"][1]["Condition"] == {"StringEquals": {"aws:ResourceTag/name": "gen3wf-data-example-org"}}


def test_umbrella_with_enabled_false_renders_nothing(umbrella):
    assert render_umbrella(umbrella, {}) == []
    assert render_umbrella(umbrella, {"rotator": {"enabled": False, "mode": "deployment"}}) == []


@pytest.mark.parametrize("mode", ["cronjob", "deployment"])
def test_umbrella_net_policy_gives_the_pods_gen3jobs_egress_label(umbrella, mode):
    def pod_labels(net_policy):
        docs = render_umbrella(umbrella, {"global": {"netPolicy": {"enabled": net_policy}}, "rotator": {"enabled": True, "mode": mode}})
        _, workload = _container(docs)
        template = workload["spec"]["jobTemplate"]["spec"]["template"] if mode == "cronjob" else workload["spec"]["template"]
        return template["metadata"]["labels"], workload

    labels, workload = pod_labels(True)
    assert labels["app"] == "gen3job"  # gen3-network-policies' gen3job-netpolicy allows it egress
    assert workload["metadata"]["labels"]["app"] == "rotator"  # the workload itself keeps gen3's common label
    if mode == "deployment":
        assert "app" not in workload["spec"]["selector"]["matchLabels"]  # the label may change after install
    labels, _ = pod_labels(False)
    assert labels["app"] == "rotator"


def test_umbrella_crossplane_creates_the_role_and_policy_and_annotates_the_service_account(umbrella):
    docs = render_umbrella(umbrella, {"global": {"crossplane": {"enabled": True}}, "rotator": {"enabled": True}})
    kinds = {d["kind"]: d for d in docs if d["apiVersion"] == "iam.aws.crossplane.io/v1beta1"}
    assert set(kinds) == {"Role", "Policy", "RolePolicyAttachment"}
    role, policy, attachment = kinds["Role"], kinds["Policy"], kinds["RolePolicyAttachment"]
    for doc in kinds.values():
        assert doc["spec"]["providerConfigRef"] == {"name": "provider-aws"}
        assert GEN3_LABELS.items() <= doc["metadata"]["labels"].items()
    assert role["metadata"]["name"] == role["spec"]["forProvider"]["name"] == "gen3-test-gen3-gen3-rotator"
    assert attachment["spec"]["forProvider"] == {"roleName": role["metadata"]["name"], "policyArnRef": {"name": policy["metadata"]["name"]}}
    assert json.loads(policy["spec"]["forProvider"]["document"]) == _iam_policy(docs)  # one document, two consumers
    oidc = "oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
    (trust,) = json.loads(role["spec"]["forProvider"]["assumeRolePolicyDocument"])["Statement"]
    assert trust["Principal"] == {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{oidc}"}
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert trust["Condition"]["StringEquals"] == {
        f"{oidc}:aud": "sts.amazonaws.com", f"{oidc}:sub": f"system:serviceaccount:gen3:{account['metadata']['name']}"}
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/gen3-test-gen3-gen3-rotator"
    env = _env(docs)
    assert json.loads(env["ROTATOR_ALLOWED_ACCOUNT_IDS"]) == ["123456789012"]  # gen3-helm's number, as a string
    assert "arn:aws:iam::123456789012:user/gen3wf-*" in _iam_policy(docs)["Statement"][1]["Resource"]
    docs = render_umbrella(umbrella, {"rotator": {"enabled": True}})
    assert not any(d["apiVersion"].startswith("iam.aws.crossplane.io/") for d in docs)
    assert "annotations" not in next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]


def test_umbrella_crossplane_needs_a_real_account_and_oidc_provider(umbrella):
    with pytest.raises(helm.HelmRenderError, match="global.crossplane.accountId must be a 12-digit"):
        render_umbrella(umbrella, {"global": {"crossplane": {"enabled": True, "accountId": "1234"}}, "rotator": {"enabled": True}})
    with pytest.raises(helm.HelmRenderError, match="oidcProviderUrl"):
        render_umbrella(umbrella, {"global": {"crossplane": {"enabled": True, "oidcProviderUrl": ""}}, "rotator": {"enabled": True}})


def test_umbrella_chart_values_override_globals(umbrella):
    docs = render_umbrella(umbrella, {
        "global": {"crossplane": {"enabled": True}},
        "rotator": {"enabled": True, "hostname": "other.example.org", "aws": {"region": "us-west-2"},
                    "allowedAccountIds": ["210987654321"],
                    "serviceAccount": {"roleArn": "arn:aws:iam::210987654321:role/gen3wf-rotator"}},
    })
    env = _env(docs)
    assert env["ROTATOR_HOSTNAME"] == "other.example.org" and env["AWS_REGION"] == "us-west-2"
    assert json.loads(env["ROTATOR_ALLOWED_ACCOUNT_IDS"]) == ["210987654321"]
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::210987654321:role/gen3wf-rotator"
    assert not any(d["apiVersion"].startswith("iam.aws.crossplane.io/") for d in docs)  # the operator's own role wins
    policy = json.dumps(_iam_policy(docs))
    assert "gen3wf-other-example-org" in policy and ":us-west-2:210987654321:" in policy and "us-east-1" not in policy


def test_umbrella_hostname_from_gen3_workflows_config(umbrella, monkeypatch, tmp_path):
    docs = render_umbrella(umbrella, {"global": {"hostname": ""},
                                      "rotator": {"enabled": True, "gen3workflowConfig": {"secretName": "gen3workflow-g3auto"}}})
    env = _env(docs)
    assert "ROTATOR_HOSTNAME" not in env and env["ROTATOR_GEN3WORKFLOW_CONFIG"] == "/etc/gen3-workflow/gen3-workflow-config.yaml"
    pod, _ = _container(docs)
    assert load_pod_settings(pod, monkeypatch, tmp_path).hostname == "data.example.org"
    with pytest.raises(helm.HelmValuesError):  # no hostname anywhere
        render_umbrella(umbrella, {"global": {"hostname": ""}, "rotator": {"enabled": True}})


def test_umbrella_db_store_from_the_services_config_drops_the_store_from_crossplanes_policy(umbrella, monkeypatch, tmp_path):
    """Under gen3-helm, gen3-workflow's config Secret alone configures the store; the role's policy has no store statement."""
    docs = render_umbrella(umbrella, {"global": {"crossplane": {"enabled": True}}, "rotator": {
        "enabled": True, "gen3workflowConfig": {"secretName": "gen3workflow-g3auto"}, "botKeys": {"store": "gen3workflow-db"}}})
    env = _env(docs)
    assert env["ROTATOR_BOT_KEYS__STORE"] == "gen3workflow-db"
    assert not any(name.startswith("ROTATOR_BOT_KEYS__DB__") for name in env)
    (policy,) = [d for d in docs if d["kind"] == "Policy"]
    document = json.loads(policy["spec"]["forProvider"]["document"])
    assert document == _iam_policy(docs)
    assert [s["Sid"] for s in document["Statement"]] == [
        "IdentityAndAccountWideReadsThatTakeNoResource", "Gen3WorkflowUserKeys", "Gen3WorkflowBotKeyCreation", "RunSecrets"]
    pod, _ = _container(docs)
    settings = load_pod_settings(pod, monkeypatch, tmp_path, service_config=SERVICE_CONFIG_WITH_DATABASE)
    assert settings.bot_keys.store == "gen3workflow-db" and settings.bot_keys.db.database == "gen3workflow"


def test_umbrella_schema_still_rejects_unknown_values(umbrella):
    with pytest.raises(helm.HelmValuesError, match="rotator"):
        render_umbrella(umbrella, {"rotator": {"enabled": True, "unknownKey": 1}})


def _readme_template_commands():
    """`helm template … | python3 -c …` lines of the READMEs' shell blocks: (readme, helm words, pipe words)."""
    commands = []
    for readme in (ROOT / "README.md", CHART / "README.md"):
        for block in re.findall(r"```sh\n(.*?)```", readme.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if line.lstrip().startswith("helm template "):
                    command, _, pipe = line.partition(" | ")
                    commands.append((readme.relative_to(ROOT), shlex.split(command), shlex.split(pipe)))
    return commands


def _merge(base, top):
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("readme, words, pipe", _readme_template_commands(), ids=lambda v: str(v) if isinstance(v, Path) else None)
def test_readme_iam_policy_commands_print_the_policy(readme, words, pipe):
    """The READMEs' `helm template … --show-only templates/iam-policy.yaml | python3 …`, run as written."""
    assert words[:2] == ["helm", "template"]
    release, chart_dir = words[2], words[3]
    values, show_only, i = {}, None, 4
    while i < len(words):
        flag, value = words[i], words[i + 1]
        if flag == "--set":
            values = _merge(values, helm.parse_set_string(value))
        elif flag == "--set-json":
            values = _merge(values, helm.parse_set_json(value))
        elif flag == "--show-only":
            show_only = value
        else:
            raise AssertionError(f"{readme} uses {flag}, which this test cannot check")
        i += 2
    manifests = helm.Chart.load(ROOT / chart_dir).render(values=values, name=release, namespace="gen3")
    printed = f"---\n# Source: rotator/{show_only}\n{manifests[f'rotator/{show_only}']}"  # as `helm template` prints it
    assert pipe[:2] == ["python3", "-c"] and pipe[3:] == [">", "iam-policy.json"]
    out = subprocess.run([sys.executable, "-c", pipe[2]], input=printed, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    policy = json.loads(out.stdout)
    assert {s["Sid"] for s in policy["Statement"]} >= {"Gen3WorkflowUserKeys", "Gen3WorkflowBotKeyCreation", "BotKeyStore", "RunSecrets"}
    assert "arn:aws:iam::123456789012:user/gen3wf-*-bot" in json.dumps(policy)


def test_slack_webhook_is_mounted_as_a_file(chart):
    docs, _ = render(chart, {"hostname": "data.example.org", "aws": {"region": "us-east-1"},
                             "notifications": {"slackWebhook": {"secretName": "slack-webhook"}}})
    job = next(d for d in docs if d["kind"] == "CronJob")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    path = env["ROTATOR_NOTIFY__SLACK_WEBHOOK_FILE"]
    volume = next(v for v in pod["volumes"] if v["name"] == "slack-webhook")
    assert volume["secret"]["secretName"] == "slack-webhook" and volume["secret"]["items"] == [{"key": "slack_webhook", "path": "webhook"}]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "slack-webhook")
    assert path == f"{mount['mountPath']}/webhook" and mount["readOnly"]
