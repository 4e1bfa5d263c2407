"""deploy/compose.yaml, checked without a Docker engine: the file's structure, that everything it
mounts and names exists and agrees (ports, hosts, paths), that its configs load, and finally the stack
itself run as plain processes: the simulator and the gateway with the exact commands compose gives
them, the image's health check, and the traffic generator."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from gateway.config import load_config
from gateway.config.loader import CONFIG_ENV
from tests.support.deploykit import (
    DEPLOY,
    cli_command,
    dockerfile_env,
    free_port,
    parse_dockerfile,
    running,
    subprocess_env,
)

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = parse_dockerfile((DEPLOY / "Dockerfile").read_text())
IMAGE_ENV = dockerfile_env(DOCKERFILE, max(i.stage for i in DOCKERFILE))
IMAGE_CMD = next(i for i in reversed(DOCKERFILE) if i.keyword == "CMD").exec_form()
OUR_IMAGE = ("gateway", "simulator", "traffic")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def mounts(service: str) -> list[tuple[Path, PurePosixPath]]:
    """Bind mounts of a service as (host path, container path); named volumes left out."""
    out = []
    for spec in SERVICES[service].get("volumes", []):
        source, target = spec.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((DEPLOY / source).resolve(), PurePosixPath(target)))
    return out


def host_path(service: str, container_path: str) -> Path:
    """Where a path inside ``service``'s container comes from on the host (through its bind mounts)."""
    path = PurePosixPath(container_path)
    for source, target in mounts(service):
        if path == target or target in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{service}: {container_path} is not under any bind mount")


def command(service: str) -> list[str]:
    cmd = SERVICES[service].get("command", IMAGE_CMD if service in OUR_IMAGE else None)
    assert isinstance(cmd, list), f"{service}: command must be exec form (a list)"
    return cmd


def arg(argv: list[str], flag: str) -> str:
    for i, a in enumerate(argv):
        if a == flag:
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {argv}")


def published(service: str) -> dict[int, str]:
    """container port -> host address:port"""
    out = {}
    for spec in SERVICES[service].get("ports", []):
        *host, container = str(spec).split(":")
        out[int(container)] = ":".join(host)
    return out


def env_defaults(path: Path) -> dict[str, str | None]:
    return {m.group(1): m.group(2) for m in _ENV_REF.finditer(path.read_text())}


GATEWAY_CONFIG = host_path("gateway", IMAGE_ENV[CONFIG_ENV])
SIMULATOR_CONFIG = host_path("simulator", arg(command("simulator"), "--config"))


def compose_spec_check(path: Path) -> subprocess.CompletedProcess[str]:
    """Validate against the Compose Specification's schema (the one check-jsonschema ships)."""
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    done = compose_spec_check(DEPLOY / "compose.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    # and the check is not vacuous: a misspelt key fails it
    broken = tmp_path / "compose.yaml"
    broken.write_text((DEPLOY / "compose.yaml").read_text().replace("depends_on:", "dependson:", 1))
    failed = compose_spec_check(broken)
    assert failed.returncode != 0 and "dependson" in failed.stdout + failed.stderr


def test_the_stack_has_its_five_services_with_pinned_images() -> None:
    assert set(SERVICES) == {"simulator", "gateway", "traffic", "prometheus", "grafana"}
    for name in OUR_IMAGE:
        svc = SERVICES[name]
        assert svc["image"] == "fusion-gateway:local"
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    for name in ("prometheus", "grafana"):
        image = SERVICES[name]["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned to a release"


def test_every_bind_mount_exists_and_is_read_only() -> None:
    for name in SERVICES:
        for source, target in mounts(name):
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(DEPLOY), f"{name}: mounts {source} from outside deploy/"
        for spec in SERVICES[name].get("volumes", []):
            if spec.startswith("."):
                assert spec.endswith(":ro"), f"{name}: {spec} should be read-only"


def test_the_gateways_ledger_is_kept_in_a_named_volume() -> None:
    """The image's FUSION_GATEWAY_DATA (where the default SQLite ledger goes) is a named volume, so the
    ledger survives a restart and a rebuild (`down -v` removes it with the rest)."""
    data = IMAGE_ENV["FUSION_GATEWAY_DATA"]
    named = {}
    for spec in SERVICES["gateway"].get("volumes", []):
        source, target = spec.split(":")[:2]
        if not source.startswith((".", "/")):
            named[target] = (source, spec.split(":")[2:])
    assert data in named, f"nothing is mounted at {data}"
    source, options = named[data]
    assert source in COMPOSE["volumes"] and "ro" not in options
    assert "FUSION_GATEWAY_DATA" not in SERVICES["gateway"].get("environment", {})  # the image's path


def test_the_files_each_service_is_told_to_read_are_there() -> None:
    assert GATEWAY_CONFIG == DEPLOY / "config" / "gateway.yaml"
    assert SIMULATOR_CONFIG.is_file()
    assert host_path("traffic", command("traffic")[1]) == DEPLOY / "traffic" / "traffic.py"
    prom_config = host_path("prometheus", arg(SERVICES["prometheus"]["command"], "--config.file"))
    assert prom_config == DEPLOY / "prometheus" / "prometheus.yml"
    for rule_file in yaml.safe_load(prom_config.read_text())["rule_files"]:
        assert (prom_config.parent / rule_file).is_file(), rule_file
    grafana_env = SERVICES["grafana"]["environment"]
    assert host_path("grafana", grafana_env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    providers = yaml.safe_load((provisioning / "dashboards" / "fusion.yaml").read_text())["providers"]
    dashboards = host_path("grafana", providers[0]["options"]["path"])
    assert sorted(p.name for p in dashboards.glob("*.json")) == ["fusion.json"]


def test_gateway_and_simulator_configs_pass_check_with_their_environment_defaults() -> None:
    # compose gives the gateway these variables; everything else the config reads has a default
    given = set(SERVICES["gateway"].get("environment", {}))
    for var, default in env_defaults(GATEWAY_CONFIG).items():
        assert default is not None or var in given, f"{GATEWAY_CONFIG.name} reads ${{{var}}} without a default"
    for path in (GATEWAY_CONFIG, SIMULATOR_CONFIG):
        env = subprocess_env({})
        for var in env_defaults(GATEWAY_CONFIG):
            env.pop(var, None)
        done = subprocess.run(cli_command("check", str(path)), env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{path}: OK")


def test_gateway_config_has_a_pool_in_every_mode_sampling_a_baseline_and_a_client_key() -> None:
    config = load_config(str(GATEWAY_CONFIG), environ={})
    assert {p.mode for p in config.pools.values()} == {"best-of", "merge", "debate"}
    assert all(p.baseline is not None and p.baseline.sample_rate > 0 for p in config.pools.values())
    assert config.auth.keys, "a gateway on 0.0.0.0 must have client keys"
    # every model is served by the simulator service, so the stack needs no API key
    assert {urlsplit(p.base_url).hostname for p in config.providers.values()} == {"simulator"}  # type: ignore[union-attr]
    simulated = load_config(str(SIMULATOR_CONFIG), environ={}).providers
    profiles = next(iter(simulated.values())).profiles  # type: ignore[union-attr]
    assert {m.upstream for m in config.models.values()} <= set(profiles)


def test_hosts_and_ports_agree_across_services() -> None:
    gateway = load_config(str(GATEWAY_CONFIG), environ={})
    port = gateway.server.port
    assert gateway.server.host == "0.0.0.0" and arg(command("gateway"), "--host") == "0.0.0.0"
    assert published("gateway") == {port: "127.0.0.1:8000"}
    # the gateway reaches the simulator at the service name and the port the simulator is told to use
    upstream = urlsplit(gateway.providers["simulator"].base_url)  # type: ignore[union-attr]
    sim_cmd = command("simulator")
    assert (upstream.hostname, upstream.port) == ("simulator", int(arg(sim_cmd, "--port")))
    assert arg(sim_cmd, "--host") == "0.0.0.0"
    assert SERVICES["simulator"]["expose"] == [arg(sim_cmd, "--port")]
    health = urlsplit(SERVICES["simulator"]["environment"]["FUSION_GATEWAY_HEALTHCHECK_URL"])
    assert (health.hostname, health.port, health.path) == ("127.0.0.1", int(arg(sim_cmd, "--port")), "/health")
    # traffic goes to the gateway service
    target = urlsplit(arg(command("traffic"), "--url"))
    assert (target.hostname, target.port) == ("gateway", port)
    # Grafana reads the prometheus service on Prometheus' default port
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    url = urlsplit(datasources["datasources"][0]["url"])
    assert (url.hostname, url.port) == ("prometheus", 9090)
    assert published("prometheus") == {9090: "127.0.0.1:9090"} and published("grafana") == {3000: "127.0.0.1:3000"}


def test_prometheus_scrapes_the_gateway_service() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    port = load_config(str(GATEWAY_CONFIG), environ={}).server.port
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    job = jobs["fusion-gateway"]  # the job name the alerts select on
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert [t for sc in job["static_configs"] for t in sc["targets"]] == [f"gateway:{port}"]
    # the dashboard's $__rate_interval is derived from the scrape interval Grafana is told
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    assert datasources["datasources"][0]["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]


def test_services_start_in_dependency_order_on_health() -> None:
    assert SERVICES["gateway"]["depends_on"] == {"simulator": {"condition": "service_healthy"}}
    assert SERVICES["traffic"]["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    assert SERVICES["traffic"]["healthcheck"] == {"disable": True}
    # the gateway gets its shutdown grace, and more, before it is killed
    grace = load_config(str(GATEWAY_CONFIG), environ={}).server.shutdown_grace_s
    assert int(SERVICES["gateway"]["stop_grace_period"].rstrip("s")) > grace


def container_argv(service: str, replace: dict[str, str]) -> list[str]:
    """The service's command as this machine can run it: container paths mapped to the host, the
    ``fusion-gateway`` and ``python`` executables to this interpreter, some options replaced."""
    argv = list(command(service))
    for i, a in enumerate(argv):
        if a.startswith("/") and i > 0:
            argv[i] = str(host_path(service, a))
        elif i > 0 and argv[i - 1] in replace:
            argv[i] = replace[argv[i - 1]]
    if argv[0] == "fusion-gateway":
        return cli_command(*argv[1:])
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def healthcheck(url: str) -> int:
    check = next(i for i in DOCKERFILE if i.keyword == "HEALTHCHECK").exec_form()
    assert check is not None
    env = {"FUSION_GATEWAY_HEALTHCHECK_URL": url}
    return subprocess.run([sys.executable, *check[1:]], env=env, capture_output=True, check=False).returncode


@pytest.mark.timeout(180)
def test_the_stack_runs_as_compose_would_start_it() -> None:
    sim_port, gw_port = free_port(), free_port()
    sim_env = subprocess_env(SERVICES["simulator"].get("environment"))
    sim_argv = container_argv("simulator", {"--port": str(sim_port)})
    gw_env = subprocess_env(
        {
            **SERVICES["gateway"]["environment"],
            CONFIG_ENV: str(GATEWAY_CONFIG),
            "SIMULATOR_URL": f"http://127.0.0.1:{sim_port}/v1",  # the service name does not resolve here
        }
    )
    for var, value in gw_env.items():
        gw_env[var] = _ENV_REF.sub(lambda m: m.group(2) or "", value)  # compose's ${VAR:-default}
    gw_argv = [*container_argv("gateway", {}), "--port", str(gw_port)]
    traffic_argv = container_argv("traffic", {"--url": f"http://127.0.0.1:{gw_port}", "--rate": "0"})
    with running(sim_argv, ready_url=f"http://127.0.0.1:{sim_port}/health", env=sim_env):
        assert healthcheck(f"http://127.0.0.1:{sim_port}/health") == 0
        with running(gw_argv, ready_url=f"http://127.0.0.1:{gw_port}/readyz", env=gw_env):
            assert healthcheck(f"http://127.0.0.1:{gw_port}/livez") == 0
            traffic_env = subprocess_env(
                {k: _ENV_REF.sub(lambda m: m.group(2) or "", v) for k, v in SERVICES["traffic"]["environment"].items()}
            )
            pools = ",".join(load_config(str(GATEWAY_CONFIG), environ={}).pools)
            done = subprocess.run(
                [*traffic_argv, "--count", "12", "--models", pools, "--seed", "3", "--stream-share", "0.25"],
                env=traffic_env,
                capture_output=True,
                text=True,
                timeout=150,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            metrics = httpx.get(f"http://127.0.0.1:{gw_port}/metrics").text  # no key: Prometheus has none
            anonymous = httpx.post(f"http://127.0.0.1:{gw_port}/v1/chat/completions", json={"model": "merge-3"})
            assert anonymous.status_code == 401, "the compose gateway listens on 0.0.0.0: keys are required"
    assert summary["sent"] == 12 and summary["models"] == pools.split(",")
    assert summary["status"].get("200", 0) >= 9, summary  # the simulator injects a few faults on purpose
    for pool in pools.split(","):
        served = re.findall(rf'fusion_requests_total\{{[^}}]*pool="{pool}"[^}}]*\}} (\S+)', metrics)
        assert sum(float(v) for v in served) == 4, pool
