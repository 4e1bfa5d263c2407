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

ROOT = Path(__file__).resolve().parent.parent
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
