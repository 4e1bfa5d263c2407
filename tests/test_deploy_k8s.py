"""deploy/k8s, checked offline: every manifest against Kubernetes' own schemas (kubernetes-validate),
the kustomization against the directory, and the manifests against each other, the image and the
gateway config they carry (ports, probe routes, grace periods, keys, Redis)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from gateway.config import parse_config
from tests.conftest import GatewayRunner
from tests.support.deploykit import DEPLOY, ROOT, cli_command, dockerfile_env, parse_dockerfile, subprocess_env

K8S = DEPLOY / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
DOCS: list[tuple[str, dict[str, Any]]] = [
    (path.name, doc)
    for path in sorted(K8S.glob("*.yaml"))
    if path.name != "kustomization.yaml"
    for doc in yaml.safe_load_all(path.read_text())
    if doc
]
#: the oldest Kubernetes the base supports, and the newest schema kubernetes-validate ships
VERSIONS = ("1.29.0", latest_version())
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def find(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


DEPLOYMENT = find("Deployment", "fusion-gateway")
POD = DEPLOYMENT["spec"]["template"]["spec"]
[CONTAINER] = POD["containers"]
ENV = {e["name"]: e for e in CONTAINER["env"]}
CONFIG_MAP = find("ConfigMap", "fusion-gateway-config")
CONFIG_PATH = PurePosixPath(ENV["FUSION_GATEWAY_CONFIG"]["value"])
CONFIG_TEXT: str = CONFIG_MAP["data"][CONFIG_PATH.name]
SECRET_VALUES = {"FUSION_CLIENT_KEY": "client-secret-0123456789", "FUSION_ADMIN_KEY": "admin-secret-0123456789"}


def container_env() -> dict[str, str]:
    """The environment the gateway container gets, with placeholder values for the Secret's keys."""
    env = {}
    for name, e in ENV.items():
        if "value" in e:
            env[name] = e["value"]
        elif not e["valueFrom"]["secretKeyRef"].get("optional"):
            env[name] = SECRET_VALUES[name]
    return env


def gateway_config() -> Any:
    return parse_config(CONFIG_TEXT, "configmap:gateway.yaml", environ=container_env())


def mount(path: str) -> dict[str, Any]:
    [m] = [m for m in CONTAINER["volumeMounts"] if m["mountPath"] == path]
    return m


def volume(name: str) -> dict[str, Any]:
    [v] = [v for v in POD["volumes"] if v["name"] == name]
    return v


def probe_port(probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    [named] = [p["containerPort"] for p in CONTAINER["ports"] if p["name"] == port]
    return int(named)


# --------------------------------------------------------------------------- schema and kustomize


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("file", "doc"), DOCS, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCS])
def test_manifest_is_valid_kubernetes(file: str, doc: dict[str, Any], version: str) -> None:
    # strict: an unknown or misspelt field is an error, not something the API server drops silently
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_what_the_api_server_would() -> None:
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    assert KUSTOMIZATION["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert KUSTOMIZATION["kind"] == "Kustomization"
    files = sorted(p.name for p in K8S.iterdir() if p.is_file() and p.name != "kustomization.yaml")
    assert sorted(KUSTOMIZATION["resources"]) == files
    assert len(set(KUSTOMIZATION["resources"])) == len(KUSTOMIZATION["resources"])


def test_kustomize_image_override_names_the_deployments_image() -> None:
    [image] = KUSTOMIZATION["images"]
    assert CONTAINER["image"] == image["name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", image["newTag"])
    for _, doc in DOCS:
        if doc["kind"] == "Deployment" and doc is not DEPLOYMENT:
            for c in doc["spec"]["template"]["spec"]["containers"]:
                assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+(-\w+)?", c["image"]), c["image"]


def test_names_are_unique_per_kind() -> None:
    keys = [(d["kind"], d["metadata"]["name"]) for _, d in DOCS]
    assert len(keys) == len(set(keys))
    assert all("namespace" not in d["metadata"] for _, d in DOCS), "the namespace is the installer's choice"


# --------------------------------------------------------------------------- the gateway's pod


def test_configmap_config_passes_check_with_the_containers_environment(tmp_path: Path) -> None:
    config = tmp_path / CONFIG_PATH.name
    config.write_text(CONFIG_TEXT)
    env = subprocess_env(container_env())
    done = subprocess.run(cli_command("check", str(config)), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # every variable the config reads without a default is one the container is given
    for var, default in {m.group(1): m.group(2) for m in _ENV_REF.finditer(CONFIG_TEXT)}.items():
        assert default is not None or var in ENV, f"the config reads ${{{var}}}, the Deployment does not set it"


def test_config_is_a_directory_mount_of_the_configmap_so_updates_reach_the_pod() -> None:
    m = mount(str(CONFIG_PATH.parent))
    assert "subPath" not in m and "subPathExpr" not in m, "a subPath mount never sees ConfigMap updates"
    assert m["readOnly"] is True
    assert volume(m["name"])["configMap"]["name"] == CONFIG_MAP["metadata"]["name"]
    assert set(CONFIG_MAP["data"]) == {CONFIG_PATH.name}
    # the image reads the same path by default
    image_env = dockerfile_env(parse_dockerfile((DEPLOY / "Dockerfile").read_text()), 1)
    assert image_env["FUSION_GATEWAY_CONFIG"] == str(CONFIG_PATH)
    assert gateway_config().server.watch_config is True


def test_ports_agree_between_config_container_service_probes_and_scrape_annotations() -> None:
    config = gateway_config()
    assert config.server.host == "0.0.0.0" and CONTAINER["args"][-2:] == ["--host", "0.0.0.0"]
    [port] = CONTAINER["ports"]
    assert port["containerPort"] == config.server.port == 8000
    service = find("Service", "fusion-gateway")
    [sp] = service["spec"]["ports"]
    assert sp["targetPort"] in (port["name"], port["containerPort"])
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.server.port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert probe_port(CONTAINER[probe]) == config.server.port, probe


def test_probes_and_scrape_path_answer_200_on_a_running_gateway(gateway: GatewayRunner) -> None:
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    paths = {CONTAINER[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"/livez", "/readyz"}
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the one SIGTERM fails at once
    with gateway((ROOT / "config" / "gateway.yaml").read_text()) as (_, srv):
        for path in [*sorted(paths), annotations["prometheus.io/path"]]:
            # no key: probes and scrapers send none
            assert httpx.get(f"{srv.url}{path}").status_code == 200, path


def test_termination_grace_covers_the_prestop_sleep_and_the_gateways_shutdown_grace() -> None:
    command = CONTAINER["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    grace = gateway_config().server.shutdown_grace_s
    total = POD["terminationGracePeriodSeconds"]
    # long enough for both, with a margin for the process to exit; not so long that a stuck pod lingers
    assert pre_stop + grace < total <= pre_stop + grace + 10
    assert pre_stop >= 3, "endpoint removal needs a few seconds to reach every proxy"


def test_pod_runs_as_the_images_non_root_user_with_a_read_only_root() -> None:
    dockerfile = parse_dockerfile((DEPLOY / "Dockerfile").read_text())
    user = [i for i in dockerfile if i.keyword == "USER"][-1].args
    uid, gid = (int(x) for x in user.split(":"))
    sc = POD["securityContext"]
    assert sc["runAsNonRoot"] is True and (sc["runAsUser"], sc["runAsGroup"]) == (uid, gid)
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = CONTAINER["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert POD["automountServiceAccountToken"] is False


def test_writable_paths_are_emptydirs_including_prometheus_multiprocess_files() -> None:
    assert "emptyDir" in volume(mount("/tmp")["name"])
    multiproc = [m for m in CONTAINER["volumeMounts"] if "metrics" in m["mountPath"]]
    assert len(multiproc) == 1 and "emptyDir" in volume(multiproc[0]["name"])
    for m in CONTAINER["volumeMounts"]:
        v = volume(m["name"])
        assert m.get("readOnly") or "emptyDir" in v, f"{m['mountPath']}: writable but not an emptyDir"
        if "emptyDir" in v:
            assert v["emptyDir"].get("sizeLimit"), f"{m['mountPath']}: unbounded emptyDir"


def test_the_default_ledger_is_written_to_its_own_emptydir_as_in_the_image() -> None:
    """The root filesystem is read-only: the default SQLite ledger goes to FUSION_GATEWAY_DATA, the
    image's path, mounted on an on-disk emptyDir of its own (the pod's: a fleet points ``ledger:`` at
    PostgreSQL, as docs/production.md says)."""
    dockerfile = parse_dockerfile((DEPLOY / "Dockerfile").read_text())
    image_env = dockerfile_env(dockerfile, max(i.stage for i in dockerfile))
    data = container_env()["FUSION_GATEWAY_DATA"]
    assert data == image_env["FUSION_GATEWAY_DATA"]
    m = mount(data)
    assert not m.get("readOnly")
    empty = volume(m["name"])["emptyDir"]
    assert empty.get("medium") != "Memory", "the ledger's file would count against the pod's memory limit"
    assert sum(1 for x in CONTAINER["volumeMounts"] if x["name"] == m["name"]) == 1
    production = (ROOT / "docs" / "production.md").read_text()
    assert "emptyDir" in production and "ledger: postgresql://" in production


def test_resources_request_cpu_for_the_autoscaler_and_bound_memory() -> None:
    resources = CONTAINER["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    assert "cpu" not in resources["limits"], "a CPU limit throttles every in-flight request"


def test_keys_come_from_one_secret_and_the_docs_say_how_to_create_it() -> None:
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in ENV.items() if "valueFrom" in e}
    assert set(refs) == {"FUSION_CLIENT_KEY", "FUSION_ADMIN_KEY", "OPENAI_API_KEY"}
    [secret] = {r["name"] for r in refs.values()}
    readme = (ROOT / "docs" / "production.md").read_text()
    assert f"create secret generic {secret}" in readme
    for ref in refs.values():
        assert f"--from-literal={ref['key']}=" in readme, ref["key"]
    assert not refs["FUSION_CLIENT_KEY"].get("optional") and not refs["FUSION_ADMIN_KEY"].get("optional")
    config = gateway_config()
    assert config.auth.keys and config.auth.keys[0].key is not None
    assert config.auth.keys[0].key.get_secret_value() == SECRET_VALUES["FUSION_CLIENT_KEY"]
    assert config.auth.admin_key is not None


# --------------------------------------------------------------------------- scale-out


def test_autoscaler_owns_the_replica_count_of_the_deployment() -> None:
    hpa = find("HorizontalPodAutoscaler", "fusion-gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    assert "replicas" not in DEPLOYMENT["spec"], "a fixed count would reset the HPA's on every apply"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"


def test_selectors_match_the_pods_they_mean() -> None:
    gateway_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    redis_labels = find("Deployment", "fusion-gateway-redis")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert DEPLOYMENT["spec"]["selector"]["matchLabels"] == gateway_labels
    pdb = find("PodDisruptionBudget", "fusion-gateway")["spec"]
    assert selects(pdb["selector"]["matchLabels"], gateway_labels)
    assert not selects(pdb["selector"]["matchLabels"], redis_labels)
    assert pdb["maxUnavailable"] == 1 or pdb.get("minAvailable", 0) < 2
    assert selects(find("Service", "fusion-gateway")["spec"]["selector"], gateway_labels)
    assert not selects(find("Service", "fusion-gateway")["spec"]["selector"], redis_labels)
    assert selects(find("Service", "fusion-gateway-redis")["spec"]["selector"], redis_labels)
    policy = find("NetworkPolicy", "fusion-gateway-redis")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], redis_labels)
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert selects(peer["podSelector"]["matchLabels"], gateway_labels)


def test_redis_url_points_at_the_redis_service_and_port() -> None:
    url = gateway_config().state.redis_url
    m = re.fullmatch(r"redis://([\w-]+):(\d+)/\d+", url or "")
    assert m, url
    service = find("Service", m.group(1))
    [port] = service["spec"]["ports"]
    assert port["port"] == int(m.group(2))
    redis = find("Deployment", "fusion-gateway-redis")["spec"]["template"]["spec"]
    [container] = redis["containers"]
    assert [p["containerPort"] for p in container["ports"] if p["name"] == port["targetPort"]] == [6379]
    assert redis["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
