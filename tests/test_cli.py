"""The command line as an operator meets it: --version, the start-up banner, a busy port, / -> /ui."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.support.procs import gateway_process

CONFIG = """
server: {watch_config: false}
providers:
  sim: {type: simulator}
models:
  a: {provider: sim}
  b: {provider: sim}
pools:
  p: {mode: best-of, members: [a, b], judge: {model: a}}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60)


def test_version_prints_the_installed_version() -> None:
    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout == f"fusion-gateway {version('fusion-gateway')}\n"


def test_serve_starts_with_a_banner_line_on_stderr(tmp_path: Path) -> None:
    keyed = CONFIG + "auth: {admin_key: adm-0123456789, keys: [{name: k, key: sk-0123456789, pools: ['*']}]}\n"
    with gateway_process(keyed, tmp_path) as gw:
        log = gw.log()
    # one JSON line like every other the process writes, before the server's own
    lines = [json.loads(x) for x in log.splitlines()]
    banner = lines[0]
    assert banner["msg"] == f"fusion-gateway {version('fusion-gateway')}" and banner["level"] == "info"
    assert {k: v for k, v in banner.items() if k not in ("ts", "level", "logger", "msg")} == {
        "version": version("fusion-gateway"),
        "config": str(gw.config_path),
        "listening": f"http://127.0.0.1:{gw.port}/v1",
        "playground": f"http://127.0.0.1:{gw.port}/ui",
        "serving": "1 pool, 2 models, 1 provider",
        "auth": "on (1 client key, admin key set)",
        "limits": "in memory (this process)",
    }


def test_the_banner_names_redis_without_its_password(tmp_path: Path) -> None:
    from gateway.cli import banner
    from gateway.config import parse_config

    config = parse_config(CONFIG + "state: {redis_url: 'redis://:s3cret@cache.internal:6380/0'}\n", "c.yaml")
    fields = banner(config, "127.0.0.1", 8000)
    assert fields["limits"] == "redis at cache.internal:6380"
    assert "s3cret" not in json.dumps(fields)
    assert fields["auth"] == "off (loopback only)"


@pytest.mark.parametrize("host", ["127.0.0.1"])
def test_a_port_in_use_is_one_clear_line_and_exit_code_1(tmp_path: Path, host: str) -> None:
    config = tmp_path / "g.yaml"
    config.write_text(CONFIG)
    with socket.socket() as taken:
        taken.bind((host, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("serve", "--config", str(config), "--host", host, "--port", str(port))
    assert done.returncode == 1
    (line,) = [json.loads(x) for x in done.stderr.splitlines()]  # one line, and no server start-up lines
    assert (line["level"], line["msg"]) == ("error", (
        f"port {port} on {host} is already in use (another gateway?): stop it, or pick another port with --port "
        "or server.port"
    ))


def test_the_root_redirects_to_the_playground(tmp_path: Path) -> None:
    with gateway_process(CONFIG, tmp_path) as gw:
        root = httpx.get(gw.url + "/")
        followed = httpx.get(gw.url + "/", follow_redirects=True)
    assert root.status_code == 307 and root.headers["location"] == "/ui"
    assert followed.status_code == 200 and followed.url.path == "/ui"
    assert followed.headers["content-type"] == "text/html; charset=utf-8"


def test_serve_reports_a_config_error_as_one_json_line(tmp_path: Path) -> None:
    """Every line serve writes is JSON, its refusal to start on a bad file included; check stays plain text."""
    bad = tmp_path / "gateway.yaml"
    bad.write_text("models:\n  m: {provider: nowhere}\n")
    served = cli("serve", "--config", str(bad))
    assert served.returncode == 1
    [line] = served.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "error" and record["msg"] == "config error" and record["path"] == str(bad)
    assert "models.m.provider: unknown provider 'nowhere'" in record["errors"]
    checked = cli("check", str(bad))
    assert checked.returncode == 1 and "models.m.provider: unknown provider 'nowhere'" in checked.stderr
    assert not checked.stderr.lstrip().startswith("{")
