"""deploy/Dockerfile, checked without a Docker engine: its instructions are parsed and the properties a
production image needs are asserted; its health check is run for real against a gateway."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from urllib.parse import urlsplit

import pytest

from gateway.config import load_config
from gateway.config.loader import CONFIG_ENV
from tests.conftest import GatewayRunner
from tests.support.deploykit import (
    DEPLOY,
    ROOT,
    Instruction,
    dockerfile_env,
    dockerignore_excludes,
    parse_dockerfile,
    read_dockerignore,
)

INSTRUCTIONS = parse_dockerfile((DEPLOY / "Dockerfile").read_text())
FINAL = max(i.stage for i in INSTRUCTIONS)
ENV = dockerfile_env(INSTRUCTIONS, FINAL)
CONFIG_PATH = "/etc/fusion-gateway/gateway.yaml"


def final(keyword: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword and i.stage == FINAL]


def only(keyword: str) -> Instruction:
    found = final(keyword)
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def test_parser_reads_continuations_exec_forms_and_stages() -> None:
    parsed = parse_dockerfile(
        '# syntax=docker/dockerfile:1\nFROM a:1 AS b\nRUN x \\\n  # note\n  && y\nFROM c:2\nCMD ["p", "q"]\n'
        'HEALTHCHECK --interval=5s CMD ["python", "-c", "pass"]\nENTRYPOINT p q\n'
    )
    assert [(i.keyword, i.stage) for i in parsed] == [
        ("FROM", 0),
        ("RUN", 0),
        ("FROM", 1),
        ("CMD", 1),
        ("HEALTHCHECK", 1),
        ("ENTRYPOINT", 1),
    ]
    assert parsed[1].args == "x && y" and parsed[1].line == 3
    assert parsed[3].exec_form() == ["p", "q"]
    assert parsed[4].exec_form() == ["python", "-c", "pass"] and parsed[4].flags() == {"interval": "5s"}
    assert parsed[5].exec_form() is None  # shell form


def test_every_stage_starts_from_the_same_slim_python_pinned_to_an_exact_release() -> None:
    bases = [i.args.split()[0] for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for base in bases:
        m = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base)
        assert m, f"{base}: not an exact python:X.Y.Z-slim-<debian> tag"
        # The image runs the Python minor version this suite runs on.
        assert (int(m.group(1)), int(m.group(2))) == sys.version_info[:2]
    assert len(set(bases)) == 1


def test_build_stage_makes_wheels_and_the_final_stage_installs_them_offline_into_a_venv() -> None:
    first = [i for i in INSTRUCTIONS if i.stage == 0]
    stage_name = first[0].args.split()[-1]
    assert first[0].args.split()[-2].upper() == "AS"
    assert any(i.keyword == "RUN" and "pip wheel" in i.args for i in first)
    install = [i for i in final("RUN") if "pip install" in i.args]
    assert len(install) == 1
    run = install[0].args
    assert f"from={stage_name}" in run, "the runtime stage takes the wheels from the build stage"
    assert "--no-index" in run, "installs only the wheels built in the first stage"
    venv = re.search(r"python -m venv (\S+)", run)
    assert venv is not None and f"{venv.group(1)}/bin/pip install" in run
    assert ENV["PATH"].startswith(f"{venv.group(1)}/bin:")
    # Nothing else is copied into the runtime image: no source tree, no build tools.
    assert final("COPY") == [] and final("ADD") == []


def test_runs_as_a_numeric_non_root_user_that_the_image_creates() -> None:
    user = final("USER")[-1].args
    m = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert m, f"USER {user}: must be numeric (Kubernetes runAsNonRoot cannot check a name)"
    uid, gid = int(m.group(1)), int(m.group(2) or m.group(1))
    assert uid != 0 and gid != 0
    created = " ".join(i.args for i in final("RUN"))
    assert f"--uid {uid}" in created and f"--gid {gid}" in created
    # and USER comes after every RUN: nothing runs as root once it is set
    assert max(i.line for i in final("RUN")) < final("USER")[-1].line


def test_cmd_is_exec_form_serving_on_all_interfaces_through_the_console_script() -> None:
    assert final("ENTRYPOINT") == []
    cmd = only("CMD").exec_form()
    assert cmd is not None, "exec form: the gateway must be PID 1 to receive SIGTERM"
    assert cmd[:2] == ["fusion-gateway", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fusion-gateway"] == "gateway.cli:main"


def test_config_is_read_from_the_documented_mount_path() -> None:
    assert ENV[CONFIG_ENV] == CONFIG_PATH
    assert "mkdir -p /etc/fusion-gateway" in " ".join(i.args for i in final("RUN"))


def test_the_default_ledger_is_written_to_a_volume_the_images_user_owns() -> None:
    """The root filesystem may be read-only (``docker run --read-only``, Kubernetes' readOnlyRootFilesystem):
    the default SQLite ledger goes to FUSION_GATEWAY_DATA, a declared volume the user can write."""
    data = ENV.get("FUSION_GATEWAY_DATA")
    assert data is not None and data.startswith("/") and not data.startswith("/tmp")
    volumes = [p.strip('"') for i in final("VOLUME") for p in i.args.strip("[]").split(",")]
    assert data in volumes, f"{data} is not a VOLUME: unwritable under a read-only root filesystem"
    uid, gid = final("USER")[-1].args.split(":")
    run = " ".join(i.args for i in final("RUN"))
    assert f"mkdir -p {data}" in run and f"chown {uid}:{gid} {data}" in run, "the user must own the directory"
    # a VOLUME declared before the directory is made and owned would be created root-owned
    assert max(i.line for i in final("RUN")) < min(i.line for i in final("VOLUME"))


def test_exposed_port_is_the_port_of_the_deploy_configs_and_of_the_health_check() -> None:
    expose = only("EXPOSE").args.split()
    assert expose == ["8000"]
    config = load_config(str(DEPLOY / "config" / "gateway.yaml"), environ={})
    assert config.server.port == 8000
    url = urlsplit(ENV["FUSION_GATEWAY_HEALTHCHECK_URL"])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 8000, "/livez")


def test_healthcheck_is_exec_form_python_with_a_timeout_shorter_than_dockers() -> None:
    check = only("HEALTHCHECK")
    argv = check.exec_form()
    assert argv is not None and argv[:2] == ["python", "-c"]
    assert not any(tool in check.args for tool in ("curl", "wget"))
    flags = check.flags()
    assert set(flags) >= {"interval", "timeout", "start-period", "retries"}
    inner = re.search(r"timeout=(\d+)", argv[2])
    assert inner is not None and int(inner.group(1)) < int(flags["timeout"].rstrip("s"))


def healthcheck(url: str) -> subprocess.CompletedProcess[bytes]:
    argv = only("HEALTHCHECK").exec_form()
    assert argv is not None
    env = {"FUSION_GATEWAY_HEALTHCHECK_URL": url}  # as the image sets it, with the test's port
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=20, check=False)


SIM = """
server: {host: 127.0.0.1, port: 8000}
providers: {sim: {type: simulator}}
models: {m: {provider: sim}}
"""


def test_healthcheck_passes_against_a_running_gateway_and_fails_once_it_stops(gateway: GatewayRunner) -> None:
    with gateway(SIM) as (_, srv):
        url = f"{srv.url}/livez"
        assert healthcheck(url).returncode == 0
        # any answer other than 2xx fails too
        assert healthcheck(f"{srv.url}/no-such-route").returncode != 0
    stopped = healthcheck(url)
    assert stopped.returncode != 0
    assert b"Connection refused" in stopped.stderr


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("pyproject.toml", False),
        ("README.md", False),
        ("gateway/app.py", False),
        ("gateway/providers/simulator/engine.py", False),
        ("fusion_modes/judge.py", False),
        ("gateway/__pycache__/app.cpython-311.pyc", True),
        (".venv/bin/python", True),
        (".git/HEAD", True),
        ("tests/test_config.py", True),
        ("deploy/compose.yaml", True),
        ("results/bench.json", True),
    ],
)
def test_dockerignore_keeps_only_what_the_wheel_is_built_from(path: str, excluded: bool) -> None:
    assert dockerignore_excludes(read_dockerignore(ROOT / ".dockerignore"), path) is excluded


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    patterns = read_dockerignore(ROOT / ".dockerignore")
    copies = [i for i in INSTRUCTIONS if i.keyword == "COPY" and "--from" not in i.args]
    sources = [src for c in copies for src in c.args.split()[:-1]]
    assert sources, "the build stage copies the sources"
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not dockerignore_excludes(patterns, src), f"{src} is copied but .dockerignore excludes it"
    # what pyproject.toml packages and reads is all there
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {p.rstrip("*") for p in packages}
    assert top_level <= set(sources), f"packages {top_level} must all be copied"
    assert project["project"]["readme"] in sources
