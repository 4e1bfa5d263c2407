"""Real processes for tests: a gateway started with the CLI, a Redis server, a PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.servers import wait_http_ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(self, config: str, workdir: Path, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 name: str = "gateway") -> None:
        self.port = free_port()
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(config)
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config_path), "--port",
             str(self.port), *args],
            env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextmanager
def gateway_process(config: str, workdir: Path, **kwargs: object) -> Iterator[GatewayProcess]:
    gp = GatewayProcess(config, workdir, **kwargs)  # type: ignore[arg-type]
    try:
        wait_http_ready(gp.url + "/readyz", timeout=30)
        yield gp
    finally:
        gp.stop()


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port (Debian's redis-server; tests/run.sh installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the suite with 'sh tests/run.sh', which installs it")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.fail("PostgreSQL is not installed: run the suite with 'sh tests/run.sh', which installs it")
    return found


class PostgresCluster:
    """A throwaway PostgreSQL cluster (Debian's ``postgresql``) on a temporary directory and a free port.

    PostgreSQL refuses to run as root: as root (CI), the cluster belongs to the ``postgres`` user."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "pg"
        self.data = self.dir / "data"
        self.port = free_port()
        self._as: list[str] = []
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(workdir, 0o755)
            self._as = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self._as, _pg_bin("initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-sync", "-D", str(self.data)], check=True, stdout=subprocess.DEVNULL)
        self.start()

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-w", "-l", str(self.dir / "server.log"), "-o", opts, "start")

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        subprocess.run([_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c",
                        f'CREATE DATABASE "{name}"'], check=True, stdout=subprocess.DEVNULL)
        return self.url(name)


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    # Its own directory under /tmp: pytest's temporary directories are private to root, and the
    # postgres user must be able to reach the cluster's.
    workdir = Path(tempfile.mkdtemp(prefix="fusion-pg-"))
    cluster = PostgresCluster(workdir)
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
