"""Installed from a wheel, outside the repository, the gateway works: the package carries its default
config and examples, ``init`` writes a starter config, ``check`` and ``serve`` run on them.

The wheel is built from a copy holding only what the image builds from (pyproject, README, the two
packages), so nothing of the repository's ``config/`` can leak in. The fresh venv gets the wheel
without dependencies and sees this interpreter's site-packages through a ``.pth`` file, which keeps the
test offline and fast.
"""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.procs import free_port
from tests.support.servers import wait_http_ready

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Installed:
    venv: Path
    site_packages: Path
    work: Path  # an empty directory outside the repository

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "fusion-gateway"), *args], cwd=self.work,
                              env={**clean_env(), **(env or {})}, capture_output=True, text=True, timeout=60)


def clean_env() -> dict[str, str]:
    # PYTHONPATH would put the repository's own gateway/ first; the point is to run the installed one.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FUSION_GATEWAY_CONFIG")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("gateway", "fusion_modes"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
                   check=True, env=clean_env(), capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("fusion_gateway-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, env=clean_env(), capture_output=True,
                   timeout=300)
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    work = tmp / "work"
    work.mkdir()
    yield Installed(venv, site_packages, work)


def test_check_without_a_config_file_uses_the_packaged_default(installed: Installed) -> None:
    proc = installed.run("check")
    assert proc.returncode == 0, proc.stderr
    packaged = installed.site_packages / "gateway" / "defaults" / "gateway.yaml"
    assert proc.stdout.startswith(f"{packaged}: OK\n")
    assert "best-of-3        best-of" in proc.stdout


def test_init_writes_a_starter_config_that_check_and_serve_pick_up(installed: Installed) -> None:
    proc = installed.run("init")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote config/gateway.yaml (offline, on the built-in simulator) and 5 examples:\n")
    names = sorted(p.name for p in (installed.work / "config" / "examples").iterdir())
    assert names == ["anthropic.yaml", "gemini.yaml", "local.yaml", "mixed-pool.yaml", "openai.yaml"]
    # config/gateway.yaml now exists, so it is the default
    proc = installed.run("check")
    assert proc.returncode == 0 and proc.stdout.startswith("config/gateway.yaml: OK\n"), proc.stderr
    proc = installed.run("check", "config/examples/openai.yaml", env={"OPENAI_API_KEY": "sk-test"})
    assert proc.returncode == 0, proc.stderr
    # a second init refuses to overwrite the edited files
    again = installed.run("init")
    assert again.returncode == 1
    assert again.stderr.startswith("not overwriting config/gateway.yaml, config/examples/anthropic.yaml")
    assert again.stderr.rstrip().endswith("(use --force to replace)")


def test_serve_answers_a_fused_request(installed: Installed, tmp_path: Path) -> None:
    # An empty directory: no config/ at all, only the packaged default.
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(installed.venv / "bin" / "fusion-gateway"), "serve", "--port", str(port)],
                            cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", timeout=30)
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                          json={"model": "best-of-3", "messages": [{"role": "user", "content": "What is 37 * 12?"}]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model"] == "best-of-3" and body["fusion"]["mode"] == "best-of"
        assert len(body["fusion"]["members"]) == 3
        # remembered in the default ledger: its schema's migrations are in the wheel
        looked_up = httpx.get(f"http://127.0.0.1:{port}/v1/fusion/requests/{resp.headers['x-request-id']}")
        assert looked_up.status_code == 200, looked_up.text
        assert [c["role"] for c in looked_up.json()["calls"]][:3] == ["member"] * 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
