"""Deploys that work on a real cluster the first time.

Every pod the chart renders (each ci scenario and the README's own commands) and the sidecar,
patched into a copy of gen3-helm's gen3-workflow Deployment, is started the way a kubelet
would start it: its container's exact environment (values resolved, Secrets and mounted files
replaced by test files) plus the service-link variables of every Service in the namespace,
running `rotator plan` against a moto server over HTTP. Pods whose bot keys go to gen3-workflow's
own table run in a namespace whose gen3-workflow config names its database: a throwaway
PostgreSQL (tests/pg.py) holding the service's `system_key` table.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import helm_python as helm
import jsonpatch
import kubernetes_validate
import pg
import pytest
import yaml
from cryptography.fernet import Fernet

from conftest import require_binary

ROOT = Path(__file__).parent.parent
CHART = ROOT / "helm" / "rotator"
SIDECAR = ROOT / "helm" / "sidecar"
GEN3_WORKFLOW = Path(__file__).parent / "fixtures" / "gen3-workflow"
SCENARIOS = sorted(CHART.glob("ci/*-values.yaml"))
READMES = (ROOT / "README.md", CHART / "README.md")
KUBE_VERSIONS = ("1.29.0", "1.37.0")
NAMESPACE = "gen3"
PLAN_TIMEOUT = 60

sys.path.insert(0, str(ROOT / "scripts"))
import sidecar_patch  # noqa: E402

# Secrets of the namespace that the pods reference (values are test stand-ins); gen3-workflow's
# config Secret comes from the gen3-workflow fixture chart, as gen3-helm renders it.
SECRETS = {
    "seqera-token": {"token": "seqera-token-for-tests"},
    "funnel-basic-auth": {"username": "funnel", "password": "funnel-password-for-tests"},
}
# A Service of someone else's in the namespace, named like ours, with several named ports.
EXTRA_SERVICES = [
    {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "rotator-extra"},
        "spec": {"clusterIP": "10.96.1.2", "ports": [
            {"name": "metrics", "port": 9102, "protocol": "TCP"},
            {"name": "grpc-web", "port": 8443, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "sig", "port": 7777, "protocol": "SCTP"},
        ]},
    },
    # single-stack IPv6 clusters give IPv6 cluster IPs ("tcp://[fd00::1a]:9102")
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "rotator-v6"},
     "spec": {"clusterIP": "fd00:10:96::1a", "ports": [{"port": 9102}]}},
    # a headless Service gets no variables
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "rotator-headless"},
     "spec": {"clusterIP": "None", "ports": [{"name": "metrics", "port": 9102}]}},
]
KUBERNETES_SERVICE = {  # the default namespace's `kubernetes` Service: in every pod
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes"},
    "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
}


# --- rendering ---------------------------------------------------------------------------


def render(chart_dir: Path, values: dict, release: str = "rotator") -> list[dict]:
    manifests = helm.Chart.load(chart_dir).render(values=values, name=release, namespace=NAMESPACE)
    return [d for path, text in manifests.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    pods = []
    for doc in docs:
        if doc["kind"] == "CronJob":
            pods.append((f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            pods.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            pods.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
    return pods


def values_of(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def gen3_workflow(values: dict | None = None) -> list[dict]:
    return render(GEN3_WORKFLOW, values or {}, release="gen3")


def patched_gen3_workflow(values: dict | None = None) -> tuple[list[dict], dict]:
    docs = gen3_workflow(values)
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gen3-workflow-deployment")
    patch = jsonpatch.JsonPatch(yaml.safe_load((SIDECAR / "gen3-workflow-patch.yaml").read_text()))
    patched = patch.apply(deployment)
    return [patched if d is deployment else d for d in docs], patched


# --- the README's helm commands ------------------------------------------------------------


def readme_helm_commands(readme: Path) -> list[list[str]]:
    """`helm …` command lines of the README's shell blocks (the Deploy and Bot-key stores sections of the top README)."""
    text = readme.read_text()
    if readme == ROOT / "README.md":
        sections = (("\n## Deploy\n", "\n## How it works"), ("\n## Bot-key stores\n", "\n## Security"))
        text = "".join(text[text.index(start):text.index(end)] for start, end in sections)
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if not re.search(r"(^|\s)helm\s", line):
                continue  # other shell (heredocs, aws, kubectl) need not be shlex-able
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                words = words[1:]  # VAR=value prefixes
            if words[:1] == ["helm"]:
                commands.append(words)
    return commands


def helm_values(words: list[str], previous: dict[str, dict]) -> tuple[str, str, dict] | None:
    """(release, chart, values) of `helm install|upgrade`, with Helm's own parsers, in Helm's precedence order."""
    if words[1] not in ("install", "upgrade"):
        return None
    files: list[str] = []
    sets: dict[str, list[str]] = {"--set-json": [], "--set": [], "--set-string": []}
    positional, reuse = [], False
    i = 2
    while i < len(words):
        flag, eq, inline = words[i].partition("=") if words[i].startswith("--") else (words[i], "", "")
        if flag in ("--reuse-values", "--install", "--wait", "--atomic", "--create-namespace"):
            reuse, i = reuse or flag == "--reuse-values", i + 1
            continue
        if not flag.startswith("-"):
            positional.append(flag)
            i += 1
            continue
        value, i = (inline, i + 1) if eq else (words[i + 1], i + 2)
        if flag in ("-f", "--values"):
            files.append(value)
        elif flag in sets:
            sets[flag].append(value)
        elif flag == "--post-renderer":
            assert "/" not in value or (ROOT / value).is_file(), f"the README's post-renderer {value} does not exist"
        elif flag not in ("-n", "--namespace", "--version", "--timeout"):
            raise AssertionError(f"the README uses {flag}, which this test cannot check: {shlex.join(words)}")
    release, chart = positional
    if chart != "helm/rotator":
        return None
    values: dict = copy.deepcopy(previous.get(release, {})) if reuse else {}
    for path in files:
        values = merge(values, helm.values_from_yaml((ROOT / path).read_text()))
    for expression in sets["--set-json"]:
        values = merge(values, helm.parse_set_json(expression))
    for expression in sets["--set"]:
        values = merge(values, helm.parse_set_string(expression))
    for expression in sets["--set-string"]:
        values = merge(values, helm.parse_set_string_values(expression))
    previous[release] = values
    return release, chart, values


def merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def readme_examples() -> list[tuple[str, dict]]:
    examples = []
    for readme in READMES:
        previous: dict[str, dict] = {}
        for n, words in enumerate(readme_helm_commands(readme)):
            parsed = helm_values(words, previous)
            if parsed is None:
                continue
            examples.append((f"{readme.relative_to(ROOT)}#{n}", parsed[2]))
    return examples


README_EXAMPLES = readme_examples()


# --- a kubelet, as far as a container's environment goes ---------------------------------------


def service_links(services: list[dict]) -> dict[str, str]:
    """The variables the kubelet gives every pod for these Services (pkg/kubelet/envvars)."""
    env: dict[str, str] = {}
    for service in services:
        ip = service["spec"].get("clusterIP")
        if not ip or ip == "None":
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        ports = service["spec"]["ports"]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        for i, port in enumerate(ports):
            protocol = port.get("protocol", "TCP")
            host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
            url = f"{protocol.lower()}://{host}:{port['port']}"
            if i == 0:
                env[f"{name}_PORT"] = url
            prefix = f"{name}_PORT_{port['port']}_{protocol.upper()}"
            env.update({prefix: url, f"{prefix}_PROTO": protocol.lower(), f"{prefix}_PORT": str(port["port"]), f"{prefix}_ADDR": ip})
    return env


def namespace_services() -> list[dict]:
    """Every Service the chart renders (any scenario, any README example), ours-alike extras, and `kubernetes`."""
    services: dict[str, dict] = {}
    for values in [values_of(p) for p in SCENARIOS] + [v for _, v in README_EXAMPLES] + [{"hostname": "x.org", "mode": "deployment"}]:
        for doc in render(CHART, values):
            if doc["kind"] == "Service":
                services.setdefault(doc["metadata"]["name"], doc)
    for doc in gen3_workflow():
        if doc["kind"] == "Service":
            services.setdefault(doc["metadata"]["name"], doc)
    assigned = []
    for n, service in enumerate(services.values(), start=10):
        service = copy.deepcopy(service)
        service["spec"].setdefault("clusterIP", f"10.96.0.{n}")  # the API server assigns one
        assigned.append(service)
    return assigned + copy.deepcopy(EXTRA_SERVICES) + [KUBERNETES_SERVICE]


@functools.cache
def namespace_links() -> dict[str, str]:
    return service_links(namespace_services())


def _expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) references, as the kubelet expands them ($$ escapes)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), value)


class FakeNode:
    """Mounts a pod's volumes in a directory and resolves its containers' environment."""

    def __init__(self, root: Path, secrets: dict[str, dict[str, str]], configmaps: dict[str, dict[str, str]] | None = None):
        self.root, self.secrets, self.configmaps = root, secrets, configmaps or {}

    def _volume(self, volume: dict) -> Path:
        path = self.root / "volumes" / volume["name"]
        if path.exists():
            return path
        path.mkdir(parents=True)
        if "emptyDir" in volume:
            return path
        for kind, store in (("secret", self.secrets), ("configMap", self.configmaps)):
            if kind in volume:
                source = volume[kind]
                name = source.get("secretName") or source.get("name")
                assert name in store, f"the pod mounts {kind} {name!r}, which the test cluster does not have"
                items = source.get("items") or [{"key": k, "path": k} for k in store[name]]
                for item in items:
                    (path / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (path / item["path"]).write_text(store[name][item["key"]])
                return path
        raise AssertionError(f"volume kind of {volume} not supported by the test")

    def environment(self, pod: dict, container: dict, links: dict[str, str]) -> dict[str, str]:
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            assert mount["name"] in volumes, f"{container['name']} mounts {mount['name']!r}, which the pod does not have"
            source = self._volume(volumes[mount["name"]])
            mounts[mount["mountPath"].rstrip("/")] = source / mount["subPath"] if mount.get("subPath") else source
        assert "envFrom" not in container, "envFrom is not resolved by this test"
        env = dict(links)  # the container's own variables win over service links
        for var in container.get("env") or []:
            if "value" in var:
                value = _expand(str(var["value"]), env)
            else:
                ref = var["valueFrom"]
                if "secretKeyRef" in ref or "configMapKeyRef" in ref:
                    key_ref = ref.get("secretKeyRef") or ref["configMapKeyRef"]
                    store = self.secrets if "secretKeyRef" in ref else self.configmaps
                    if key_ref["name"] not in store and key_ref.get("optional"):
                        continue
                    assert key_ref["name"] in store, f"{var['name']} reads {key_ref['name']!r}, which the test cluster does not have"
                    value = store[key_ref["name"]][key_ref["key"]]
                elif "fieldRef" in ref:
                    value = {"metadata.namespace": NAMESPACE, "metadata.name": "pod-0", "status.podIP": "10.0.0.7"}[ref["fieldRef"]["fieldPath"]]
                else:
                    raise AssertionError(f"valueFrom {ref} not supported by the test")
            env[var["name"]] = value
        for name, value in env.items():  # paths inside the container -> the files made for it
            for target, source in sorted(mounts.items(), key=lambda m: -len(m[0])):
                if value == target or value.startswith(target + "/"):
                    env[name] = str(source) + value[len(target):]
                    break
        return env


# --- the workloads: every pod that runs rotator ---------------------------------------------


def _config_secret() -> dict[str, dict[str, str]]:
    secret = next(d for d in gen3_workflow() if d["kind"] == "Secret" and d["metadata"]["name"] == "gen3workflow-g3auto")
    return {"gen3workflow-g3auto": secret["stringData"]}


SERVICE_ENCRYPTION_KEY = Fernet.generate_key().decode()


def _config_secret_with_database(database: pg.Database) -> dict[str, dict[str, str]]:
    """gen3-workflow's config Secret as the service keeping bot keys in its own table has it: DB_* and ENCRYPTION_KEY."""
    (name, data), = _config_secret().items()
    (key, text), = data.items()
    server = database.server
    text += (f"\nDB_DRIVER: postgresql+asyncpg\nDB_HOST: {server.host}\nDB_PORT: {server.port}\nDB_USER: {pg.SUPERUSER}"
             f"\nDB_PASSWORD: {database.password}\nDB_DATABASE: {database.dbname}\nENCRYPTION_KEY: {SERVICE_ENCRYPTION_KEY}\n")
    return {name: {key: text}}


SIDECAR_WITH_DATABASE = "sidecar-in-gen3-workflow-with-its-database"


def workloads() -> dict[str, tuple[dict, dict]]:
    """id -> (pod spec, rotator container) for each pod that runs rotator."""
    found: dict[str, tuple[dict, dict]] = {}
    sources = [(p.stem, render(CHART, values_of(p))) for p in SCENARIOS]
    sources += [(f"readme:{name}", render(CHART, values)) for name, values in README_EXAMPLES]
    sources += [("sidecar-in-gen3-workflow", patched_gen3_workflow()[0])]
    sources += [(SIDECAR_WITH_DATABASE, patched_gen3_workflow()[0])]  # the same pod; its config names the database
    for source, docs in sources:
        for kind, pod in pod_specs(docs):
            for container in pod["containers"]:
                if container["name"] == "rotator":
                    found[f"{source}:{kind}"] = (pod, container)
    return found


WORKLOADS = workloads()


def uses_the_services_database(workload: str) -> bool:
    """The pod's namespace is gen3-workflow with its database: the chart chose the gen3workflow-db store, or the sidecar
    reads the service's config naming the database (which makes gen3workflow-db rotator's default)."""
    _, container = WORKLOADS[workload]
    chosen = any(e["name"] == "ROTATOR_BOT_KEYS__STORE" and e.get("value") == "gen3workflow-db" for e in container.get("env") or [])
    return chosen or workload.startswith(SIDECAR_WITH_DATABASE + ":")


DB_WORKLOADS = sorted(w for w in WORKLOADS if uses_the_services_database(w))


def plan_args(container: dict) -> list[str]:
    """`rotator plan` with the container's --job choices (plan changes nothing, whatever the args)."""
    args = container.get("args") or []
    assert args and args[0] in ("run", "serve"), args
    jobs = [args[i + 1] for i, a in enumerate(args) if a == "--job"]
    return ["plan", *(w for job in jobs for w in ("--job", job))]


def base_environment(home: Path) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]  # the same rotator as this test process
    return env


def aws_environment(env: dict[str, str], endpoint: str) -> dict[str, str]:
    """What IRSA adds (credentials; AWS_REGION only when the container sets none), pointed at moto."""
    out = dict(env)
    out.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    if "AWS_REGION" not in env and "AWS_DEFAULT_REGION" not in env:
        out.update(AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1")
    return out


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # The emulator's backends are process-wide: start from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).read()
    yield url
    server.stop()


@dataclass(frozen=True)
class ServiceDatabase:
    """gen3-workflow's database for the pods that store bot keys in it, or why there is none (PostgreSQL absent)."""

    database: pg.Database | None
    unavailable: BaseException | None = None

    def require(self) -> pg.Database:
        if self.database is None:
            raise self.unavailable  # pytest's skip (a laptop without PostgreSQL) or fail (CI)
        return self.database


@pytest.fixture(scope="module")
def service_database() -> ServiceDatabase:
    try:
        database = pg.database("timestamp")  # the table as gen3-workflow's migration creates it
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        return ServiceDatabase(None, exc)
    database.reset()
    return ServiceDatabase(database)


def namespace_secrets(workload: str, service_database: ServiceDatabase) -> dict[str, dict[str, str]]:
    """The namespace's Secrets for this pod: gen3-workflow's config names its database for the pods that use it."""
    if uses_the_services_database(workload):
        return {**SECRETS, **_config_secret_with_database(service_database.require())}
    return {**SECRETS, **_config_secret()}


@pytest.fixture(scope="module")
def started_pods(moto_endpoint, service_database, tmp_path_factory) -> dict[str, subprocess.CompletedProcess | BaseException]:
    """Every workload's `rotator plan`, started at once (they only read), then awaited."""
    links = namespace_links()
    assert {"ROTATOR_SERVICE_HOST", "ROTATOR_PORT", "ROTATOR_PORT_9102_TCP_ADDR", "ROTATOR_EXTRA_SERVICE_PORT_GRPC_WEB",
            "ROTATOR_EXTRA_PORT_53_UDP_PROTO", "ROTATOR_EXTRA_PORT_7777_SCTP", "ROTATOR_V6_PORT"} <= set(links)
    running, done = {}, {}
    for name, (pod, container) in WORKLOADS.items():
        try:
            secrets = namespace_secrets(name, service_database)
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            done[name] = exc
            continue
        root = tmp_path_factory.mktemp("pod")
        env = FakeNode(root, secrets).environment(pod, container, links)
        full = aws_environment({**base_environment(root), **env}, moto_endpoint)
        running[name] = subprocess.Popen(
            [sys.executable, "-m", "rotator", *plan_args(container)], env=full, cwd=root,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    deadline = time.monotonic() + PLAN_TIMEOUT
    for name, proc in running.items():
        try:
            stdout, stderr = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return done


# --- pods start whatever Services the namespace has -------------------------------------------


def test_service_links_follow_the_kubelet():
    links = service_links([KUBERNETES_SERVICE, *EXTRA_SERVICES])
    assert links["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert links["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert links["KUBERNETES_PORT"] == links["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert links["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
    assert links["ROTATOR_V6_PORT"] == "tcp://[fd00:10:96::1a]:9102"
    assert links["ROTATOR_EXTRA_SERVICE_PORT_GRPC_WEB"] == "8443"
    assert links["ROTATOR_EXTRA_PORT_53_UDP"] == "udp://10.96.1.2:53" and links["ROTATOR_EXTRA_PORT_53_UDP_PROTO"] == "udp"
    assert links["ROTATOR_EXTRA_PORT"] == "tcp://10.96.1.2:9102"  # the first port only
    assert not any(k.startswith("ROTATOR_HEADLESS") for k in links)


def test_there_is_a_workload_per_mode_readme_example_and_the_sidecar():
    assert any(":CronJob/" in w for w in WORKLOADS) and any(":Deployment/rotator" in w for w in WORKLOADS)
    assert any(w.startswith("readme:") for w in WORKLOADS)
    assert "sidecar-in-gen3-workflow:Deployment/gen3-workflow-deployment" in WORKLOADS
    assert len(README_EXAMPLES) >= 4  # install, upgrade, the deployment variant; the chart README's install


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_every_pod_disables_service_links(workload):
    pod, _ = WORKLOADS[workload]
    assert pod.get("enableServiceLinks") is False


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_pod_starts_with_the_namespace_service_links(started_pods, workload):
    """The container's exact environment plus every service link of the namespace: `rotator plan` exits 0."""
    result = started_pods[workload]
    if isinstance(result, BaseException):
        raise result  # gen3-workflow's database could not be started here
    assert result.returncode == 0, f"{shlex.join(result.args)} exited {result.returncode}:\n{result.stderr[-3000:]}\n{result.stdout[-2000:]}"


# --- bot keys in gen3-workflow's own table ------------------------------------------------------


def run_rotator(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rotator", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=PLAN_TIMEOUT)


def effective(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """`rotator config --output json`: variable -> (value, source)."""
    assert result.returncode == 0, result.stderr
    return {row["variable"]: (row["value"], row["source"]) for row in json.loads(result.stdout)["settings"]}


def test_the_db_store_pods_are_the_ci_scenario_and_the_sidecar():
    assert "gen3workflow-db-values:CronJob/rotator" in DB_WORKLOADS
    assert f"{SIDECAR_WITH_DATABASE}:Deployment/gen3-workflow-deployment" in DB_WORKLOADS
    assert "sidecar-in-gen3-workflow:Deployment/gen3-workflow-deployment" not in DB_WORKLOADS  # today's config: no database


@pytest.mark.parametrize("workload", DB_WORKLOADS)
def test_db_store_pods_write_bot_keys_to_the_services_table(service_database, moto_endpoint, tmp_path, workload):
    """With the pod's exact environment, rotator's effective store is gen3workflow-db, configured from the service's file."""
    pod, container = WORKLOADS[workload]
    secrets = namespace_secrets(workload, service_database)
    env = FakeNode(tmp_path, secrets).environment(pod, container, namespace_links())
    result = run_rotator(["config", "--output", "json"], aws_environment({**base_environment(tmp_path), **env}, moto_endpoint), tmp_path)
    settings = effective(result)
    database = service_database.require()
    assert settings["ROTATOR_BOT_KEYS__STORE"][0] == "gen3workflow-db"
    assert settings["ROTATOR_BOT_KEYS__DB__DATABASE"] == (database.dbname, f"DB_DATABASE in {env['ROTATOR_GEN3WORKFLOW_CONFIG']}")
    assert database.password not in result.stdout + result.stderr and SERVICE_ENCRYPTION_KEY not in result.stdout + result.stderr


def test_db_store_from_an_existing_secret_plans_against_the_database(service_database, moto_endpoint, tmp_path):
    """botKeys.db with an existing Secret (password and ENCRYPTION_KEY as files), rendered and started like a kubelet."""
    database = service_database.require()
    server = database.server
    values = {"hostname": "data.example.org", "aws": {"region": "us-east-1"}, "allowedAccountIds": ["123456789012"],
              "botKeys": {"store": "gen3workflow-db", "db": {
                  "host": server.host, "port": server.port, "user": pg.SUPERUSER, "database": database.dbname, "sslmode": "disable",
                  "secret": {"name": "gen3workflow-db"}}}}
    docs = render(CHART, values)
    ((_, pod),) = pod_specs(docs)
    (container,) = pod["containers"]
    secrets = {**SECRETS, "gen3workflow-db": {"password": database.password, "encryption-key": SERVICE_ENCRYPTION_KEY}}
    env = FakeNode(tmp_path, secrets).environment(pod, container, namespace_links())
    assert database.password not in env.values() and SERVICE_ENCRYPTION_KEY not in env.values()  # files, never variables
    env = aws_environment({**base_environment(tmp_path), **env}, moto_endpoint)
    settings = effective(run_rotator(["config", "--output", "json"], env, tmp_path))
    assert settings["ROTATOR_BOT_KEYS__STORE"] == ("gen3workflow-db", "environment")
    assert settings["ROTATOR_BOT_KEYS__DB__HOST"] == (server.host, "environment")
    result = run_rotator(plan_args(container), env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert database.password not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "name, value",
    [
        ("ROTATOR_DRYRUN", "false"),  # a typo of ROTATOR_DRY_RUN
        ("ROTATOR_METRICS_PORT", "9102"),  # one underscore for two
        ("ROTATOR_PORT", "9102"),  # a service-link name without a service-link value
    ],
)
def test_a_real_typo_still_exits_2(moto_endpoint, tmp_path, name, value):
    env = aws_environment({**base_environment(tmp_path), **namespace_links(),
                           "ROTATOR_HOSTNAME": "data.example.org", name: value}, moto_endpoint)
    proc = subprocess.run([sys.executable, "-m", "rotator", "plan"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=PLAN_TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    assert name in proc.stderr


# --- serve is live before it is ready ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def test_serve_is_live_but_not_ready_while_aws_is_unreachable(tmp_path):
    port, unreachable = _free_port(), _free_port()  # nothing listens on `unreachable`
    pod, container = WORKLOADS["deployment-values:Deployment/rotator"]
    env = FakeNode(tmp_path, {**SECRETS, **_config_secret()}).environment(pod, container, namespace_links())
    env = aws_environment({**base_environment(tmp_path), **env}, f"http://127.0.0.1:{unreachable}")
    env.update(ROTATOR_METRICS__PORT=str(port), ROTATOR_METRICS__BIND_ADDRESS="127.0.0.1")
    with open(tmp_path / "serve.log", "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rotator", "serve"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while _status(f"http://127.0.0.1:{port}/healthz") != 200:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
            assert _status(f"http://127.0.0.1:{port}/readyz") == 503
            time.sleep(1.5)  # a retry of the identity later: still alive, still not ready
            assert (_status(f"http://127.0.0.1:{port}/healthz"), _status(f"http://127.0.0.1:{port}/readyz")) == (200, 503)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            log.seek(0)
            output = log.read()
    assert "serve.identity_unavailable" in output


# --- the README's commands render as written ---------------------------------------------------


@pytest.mark.parametrize("example", [name for name, _ in README_EXAMPLES])
def test_readme_examples_render_and_validate(example):
    values = dict(README_EXAMPLES)[example]
    docs = render(CHART, values)  # the chart's schema is checked while rendering
    for doc in docs:
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
    ((_, pod),) = pod_specs(docs)
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert json.loads(env["ROTATOR_ALLOWED_ACCOUNT_IDS"]) == ["123456789012"]


def test_account_ids_given_with_plain_set_are_refused():
    """Why the README uses --set-json/--set-string: Helm's --set makes the id a number."""
    values = merge({"hostname": "data.example.org"}, helm.parse_set_string("allowedAccountIds={123456789012}"))
    with pytest.raises(helm.HelmValuesError, match="allowedAccountIds"):
        render(CHART, values)


def test_readme_upgrade_reuses_the_install_values():
    top = [values for name, values in README_EXAMPLES if name.startswith("README.md")]
    install, upgrade = top[0], top[1]
    assert upgrade == {**install, "dryRun": False}


# --- the sidecar patch for gen3-helm's gen3-workflow --------------------------------------------


def test_sidecar_patch_is_generated_from_the_container_spec():
    assert (SIDECAR / "gen3-workflow-patch.yaml").read_text() == sidecar_patch.render(), "run python3 scripts/sidecar_patch.py"


@pytest.mark.parametrize(
    "values",
    [{}, {"replicaCount": 3, "metricsEnabled": True, "podAnnotations": {"team": "gen3"}}],
    ids=["defaults", "replicas-and-metrics"],
)
def test_sidecar_patch_applies_to_gen3_workflow_and_validates(values):
    _, deployment = patched_gen3_workflow(values)
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(deployment, version, strict=True)
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    assert [c["name"] for c in spec["containers"]] == ["gen3-workflow", "rotator"]
    rotator = spec["containers"][1]
    assert rotator == yaml.safe_load((SIDECAR / "rotator-sidecar.yaml").read_text())
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["rotator-tmp"] == {"name": "rotator-tmp", "emptyDir": {"sizeLimit": "64Mi"}}
    assert {m["name"] for m in rotator["volumeMounts"]} <= set(volumes)
    assert spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] == "gen3-workflow-sa"
    annotations = pod["metadata"]["annotations"]
    port = next(p["containerPort"] for p in rotator["ports"] if p["name"] == "rotator-metrics")
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics" and "checksum/config" in annotations
    assert "readinessProbe" not in rotator  # rotator not ready must not take gen3-workflow out of its Service
    env = {e["name"]: e["value"] for e in rotator["env"]}
    assert int(env["ROTATOR_SCHEDULE__JITTER_SECONDS"]) >= 1800  # replicas spread over (at least) half an hour


def test_post_renderer_applies_the_patch_with_kustomize(tmp_path):
    """post-render.sh as Helm runs it: rendered manifests on stdin, patched manifests on stdout."""
    if not shutil.which("kustomize"):
        require_binary("kubectl")  # its built-in kustomize
    docs = gen3_workflow({"replicaCount": 2})
    stdin = "".join(f"---\n# Source: gen3-workflow/templates/{d['kind'].lower()}.yaml\n{yaml.safe_dump(d)}" for d in docs)
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/gen3wf-rotator:0.1.0"
    env = {**os.environ, "SIDECAR_IMAGE": image, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([str(SIDECAR / "post-render.sh")], input=stdin, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = [d for d in yaml.safe_load_all(proc.stdout) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, out)) == sorted(map(key, docs))
    deployment = next(d for d in out if d["kind"] == "Deployment")
    _, expected = patched_gen3_workflow({"replicaCount": 2})
    expected["spec"]["template"]["spec"]["containers"][1]["image"] = image
    assert deployment == expected
    others = sorted((d for d in out if d["kind"] != "Deployment"), key=key)
    assert others == sorted((d for d in docs if d["kind"] != "Deployment"), key=key)  # passed through unchanged
    assert list(tmp_path.iterdir()) == []  # its work directory is gone


def test_helm4_plugin_runs_the_post_renderer():
    plugin = yaml.safe_load((SIDECAR / "plugin.yaml").read_text())
    assert plugin["apiVersion"] == "v1" and plugin["type"] == "postrenderer/v1" and plugin["runtime"] == "subprocess"
    (command,) = plugin["runtimeConfig"]["platformCommand"]
    script = SIDECAR / command["command"].replace("${HELM_PLUGIN_DIR}/", "")
    assert script.is_file() and os.access(script, os.X_OK)
    assert plugin["name"] in (ROOT / "README.md").read_text()


def test_podmonitor_scrapes_the_sidecar_port():
    monitor = yaml.safe_load((SIDECAR / "podmonitor.yaml").read_text())
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"] for p in yaml.safe_load((SIDECAR / "rotator-sidecar.yaml").read_text())["ports"]}
    assert endpoint["port"] in ports and endpoint["honorLabels"] is True
    pod_labels = next(d for d in gen3_workflow() if d["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
