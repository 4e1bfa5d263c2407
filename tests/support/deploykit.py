"""Helpers for the tests of ``deploy/``: reading a Dockerfile and a .dockerignore the way Docker does,
free ports, and running the CLI as a real subprocess (as a container would)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


# --------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the logical line, continuations joined
    line: int
    stage: int  # index of the FROM this instruction belongs to (-1 before the first FROM)

    def exec_form(self) -> list[str] | None:
        """The JSON-array (exec) form of the arguments, or None when they are in shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            m = re.search(r"(?:^|\s)CMD\s+(.*)$", text, re.S)
            if m is None:
                return None
            text = m.group(1)
        text = text.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def flags(self) -> dict[str, str]:
        """``--name=value`` options before the arguments (FROM, COPY, RUN, HEALTHCHECK)."""
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.args.split(" CMD ")[0]))


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped, backslash continuations joined (comment lines inside a
    continuation are dropped too, as Docker does)."""
    out: list[Instruction] = []
    stage = -1
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        logical = " ".join(p for p in buf if p)
        buf = []
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), start, stage))
    assert not buf, "Dockerfile ends inside a line continuation"
    return out


def dockerfile_env(instructions: list[Instruction], stage: int) -> dict[str, str]:
    """ENV of one stage (``KEY=value`` pairs; ``$PATH``-style references are left as written)."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV" and ins.stage == stage:
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', ins.args):
                env[key] = value.strip('"')
    return env


# --------------------------------------------------------------------------- .dockerignore


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, forward slashes) out of the build context.

    Docker's rules: patterns are matched against the path and each of its parent directories (a
    matched directory takes its contents with it), ``**`` matches any number of directories, a
    leading ``!`` re-includes, and the last matching pattern wins.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw[1:] if negate else raw).lstrip("/")
        if any(_glob(pattern, p) for p in prefixes):
            excluded = not negate
    return excluded


def _glob(pattern: str, path: str) -> bool:
    if "**" not in pattern:
        p_parts, s_parts = pattern.split("/"), path.split("/")
        if len(p_parts) != len(s_parts):
            return False
        return all(fnmatch.fnmatchcase(s, p) for p, s in zip(p_parts, s_parts, strict=True))
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    regex = regex.replace(r"\?", "[^/]")
    return re.fullmatch(regex, path) is not None


def read_dockerignore(path: Path) -> list[str]:
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


# --------------------------------------------------------------------------- processes and ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli_command(*args: str) -> list[str]:
    """``fusion-gateway ARGS`` through this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())", *args]


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment minus any config path of the caller's, with this checkout importable."""
    env = {k: v for k, v in os.environ.items() if k != "FUSION_GATEWAY_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


@contextmanager
def running(
    argv: list[str], *, ready_url: str | None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess that is up (``ready_url`` answers 200) for the block, then stopped with SIGTERM."""
    proc = subprocess.Popen(
        argv,
        env=dict(env) if env is not None else subprocess_env(),
        cwd=cwd or ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        if ready_url is not None:
            _wait_ready(proc, ready_url)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} was ready:\n{out}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not become ready")


def which(command: str) -> str | None:
    return shutil.which(command)


def load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------- Prometheus


class Prometheus:
    """The HTTP API of a running Prometheus server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, params: Mapping[str, str] | list[tuple[str, str]]) -> Any:
        resp = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        body = resp.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result as a list of series (a scalar becomes one series)."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self._get(f"/api/v1/label/{label}/values", [("match[]", match)])
        return values

    def rules(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self._get("/api/v1/rules", {})["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._get("/api/v1/targets", {})["activeTargets"]
        return active

    def wait_for(self, expr: str, predicate: Any, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``predicate(result)`` holds (e.g. a scrape has seen the latest traffic)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr}: still {result} after {timeout}s")
            time.sleep(0.2)


@contextmanager
def prometheus_server(config: Mapping[str, Any], workdir: Path) -> Iterator[Prometheus]:
    """A real Prometheus on a free loopback port, its config and TSDB in ``workdir``."""
    import yaml

    binary = which("prometheus")
    assert binary is not None, "prometheus is not installed (tests/run.sh installs it)"
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    port = free_port()
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running(argv, ready_url=f"http://127.0.0.1:{port}/-/ready", env=dict(os.environ), cwd=workdir):
        yield Prometheus(f"http://127.0.0.1:{port}")


def finite(result: list[dict[str, Any]]) -> list[float]:
    """The finite values of an instant-query result (NaN and ±Inf left out)."""
    import math

    values = [float(s["value"][1]) for s in result]
    return [v for v in values if math.isfinite(v)]


# --------------------------------------------------------------------------- traffic through every mode

CLIENT_KEY = "deploy-test-key"

#: Pools in every mode, with faults the dashboard and the alerts are about, all deterministic
#: (rate 1.0) so every series exists after a handful of requests: a member that always fails (errors,
#: a quorum miss, degraded requests), one that never answers (timeouts), one slower than the grace
#: period (cancelled), a judge that always fails (fallbacks), a pool with no working member (error
#: requests), an unpriced model, baseline sampling on every request, a model on two deployments one of
#: which always fails (ejected), and a model that always falls back.
EVERY_MODE = f"""
server: {{host: 127.0.0.1, port: 8000, shutdown_grace_s: 2}}
providers:
  sim:
    type: simulator
    seed: 11
    retry: {{max_retries: 0}}
    profiles:
      a:        {{ttft_ms: 2, tokens_per_s: 5000, accuracy: 0.8}}
      b:        {{ttft_ms: 4, tokens_per_s: 5000, accuracy: 0.8}}
      broken:   {{ttft_ms: 1, failures: {{rate: 1.0, status: 503}}}}
      hang:     {{ttft_ms: 1, failures: {{timeout_rate: 1.0}}}}
      late:     {{ttft_ms: 400, tokens_per_s: 5000}}
      judge:    {{ttft_ms: 2, tokens_per_s: 5000}}
      badjudge: {{ttft_ms: 1, failures: {{rate: 1.0, status: 500}}}}
      ft:       {{ttft_ms: 3, tokens_per_s: 5000, accuracy: 0.85}}
      flaky:    {{ttft_ms: 1, failures: {{rate: 1.0, status: 502}}}}
models:
  a:        {{provider: sim, price: {{input: 0.15, output: 0.60}}}}
  b:        {{provider: sim, price: {{input: 0.25, output: 1.00}}}}
  broken:   {{provider: sim, price: {{input: 0.10, output: 0.40}}}}
  hang:     {{provider: sim, price: {{input: 0.10, output: 0.40}}, timeouts: {{first_byte_s: 0.3, total_s: 0.3}}}}
  late:     {{provider: sim, price: {{input: 0.10, output: 0.40}}}}
  judge:    {{provider: sim, price: {{input: 2.50, output: 10.00}}}}
  badjudge: {{provider: sim, price: {{input: 2.50, output: 10.00}}}}
  ft:       {{provider: sim, price: {{input: 0.30, output: 1.20}}}}
  free:     {{provider: sim, model: a}}
  spread:
    price: {{input: 0.15, output: 0.60}}
    deployments: [{{provider: sim, model: a}}, {{provider: sim, model: flaky}}]
    outlier_detection: {{consecutive_failures: 1, base_ejection_s: 600, max_ejection_s: 600}}
  stepped:  {{provider: sim, model: flaky, price: {{input: 0.10, output: 0.40}}, fallbacks: [a]}}
pools:
  best:
    mode: best-of
    members: [a, b, broken]
    judge: {{model: judge}}
    baseline: {{model: ft, sample_rate: 1.0, compare: judge}}
  merged:
    mode: merge
    members: [a, b, late]
    judge: {{model: judge}}
    quorum: 2
    grace_ms: 20
    baseline: {{model: ft, sample_rate: 1.0, compare: judge}}
  debated:
    mode: debate
    members: [a, b, hang]
    judge: {{model: judge}}
    debate: {{rounds: 1, final: merge}}
    timeout_s: 0.3
    baseline: {{model: ft, sample_rate: 1.0, compare: judge}}
  fallback:
    mode: best-of
    members: [a, b]
    judge: {{model: badjudge, timeout_s: 2}}
    baseline: {{model: ft, sample_rate: 1.0, compare_judge: judge}}
  dead:
    mode: best-of
    members: [broken]
auth:
  keys:
    - {{name: deploy-tests, key: {CLIENT_KEY}, pools: ["*"], models: ["*"]}}
"""
POOLS = ("best", "merged", "debated", "fallback", "dead")


def load_traffic_module() -> Any:
    """deploy/traffic/traffic.py, the compose stack's traffic generator, imported."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fusion_traffic", DEPLOY / "traffic" / "traffic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def drive(url: str, per_name: int, *, key: str = CLIENT_KEY, seed: int = 1) -> dict[str, Any]:
    """``per_name`` requests to every name /v1/models lists, through the compose traffic generator."""
    import asyncio

    traffic = load_traffic_module()
    names = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {key}"}).json()["data"]
    count = str(per_name * len(names))
    args = ["--url", url, "--key", key, "--rate", "0", "--seed", str(seed), "--ready-timeout", "10", "--count", count]
    summary: dict[str, Any] = asyncio.run(traffic.run(traffic.parse_args(args)))
    return summary


# --------------------------------------------------------------------------- dashboard and rules


@dataclass(frozen=True)
class Query:
    where: str  # "panel 'title' A", "variable pool", "rule name"
    expr: str


def dashboard() -> dict[str, Any]:
    dash: dict[str, Any] = json.loads((DEPLOY / "grafana" / "dashboards" / "fusion.json").read_text())
    return dash


def dashboard_queries() -> list[Query]:
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append(Query(f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out


def rule_queries() -> list[Query]:
    import yaml

    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [Query(f"rule {r.get('record') or r.get('alert')}", r["expr"]) for g in rules["groups"] for r in g["rules"]]


def grafana_to_promql(expr: str, *, pool: str = ".*", rate_interval: str = "1m", range_: str = "5m") -> str:
    """What Grafana sends to Prometheus: the dashboard's variables replaced by values."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$__range", range_)
        .replace("$__interval", "15s")
        .replace("$pool", pool)
    )


_METRIC = re.compile(r"(?<![\w:$])((?:fusion|gen_ai)_[a-z0-9_]+)(?![\w:])")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """The gateway metric names (not recording-rule names, not labels) an expression reads."""
    bare = re.sub(r'"[^"]*"', '""', expr)  # string literals
    bare = re.sub(r"\{[^}]*\}", "{}", bare)  # label matchers
    bare = _GROUPING.sub("", bare)  # by (...), on (...)
    return set(_METRIC.findall(bare))


def label_names(expr: str) -> set[str]:
    """Every label an expression matches on or groups by."""
    names = set()
    for selector in re.findall(r"\{([^}]*)\}", expr):
        names.update(_MATCHER.findall(selector))
    for group in _GROUPING.findall(expr):
        names.update(n.strip() for n in group.split(",") if n.strip())
    return names


def exposition(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, from a /metrics scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


# --------------------------------------------------------------------------- Kubernetes volumes


def write_configmap_volume(directory: Path, files: Mapping[str, str], version: int) -> None:
    """Lay out (or update) ``directory`` the way the kubelet does a ConfigMap volume.

    The files live in a timestamped directory; ``..data`` is a symlink to it and each key is a symlink
    through ``..data``. An update writes a new timestamped directory, swaps ``..data`` atomically with a
    rename, then removes the old one: the key's path never changes, its inode does.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f"..2026_01_01_00_00_{version:02d}.000000001"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
    data = directory / "..data"
    old = data.resolve() if data.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.symlink_to(stamp.name)
    os.replace(tmp, data)
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(old)


#: counters that background work (baseline calls and their comparisons) keeps moving after a response
SETTLING = (
    "fusion_requests_total",
    "fusion_baseline_comparisons_total",
    "fusion_baseline_cost_ratio_count",
    "fusion_baseline_latency_ratio_count",
    "fusion_cost_usd_total",
)


def totals(url: str) -> dict[str, float]:
    """Sum of every series of each SETTLING counter, from one /metrics scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    out = dict.fromkeys(SETTLING, 0.0)
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            if s.name in out:
                out[s.name] += s.value
    return out


def settle(url: str, quiet: float = 0.5, timeout: float = 30) -> dict[str, float]:
    """Wait until the gateway's background work is done: the SETTLING totals stop moving."""
    deadline = time.monotonic() + timeout
    last = totals(url)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = totals(url)
        if now == last:
            return now
        last = now
    raise TimeoutError(f"{url}: metrics still moving after {timeout}s")
