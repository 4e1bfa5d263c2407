from __future__ import annotations

import socket
import textwrap
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import openai
import pytest

from gateway.app import GatewayApp, create_app
from gateway.config import parse_config
from tests.support.fakes import FakeUpstream
from tests.support.procs import PostgresCluster, postgres_cluster
from tests.support.servers import ServerThread, serving


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    """A scriptable upstream on a real loopback port; its base URL is ``fake.url``."""
    upstream = FakeUpstream()
    with serving(upstream) as server:
        upstream.url = server.url  # type: ignore[attr-defined]
        yield upstream


@contextmanager
def run_gateway(config_yaml: str, **kwargs: Any) -> Iterator[tuple[GatewayApp, ServerThread]]:
    config = parse_config(textwrap.dedent(config_yaml), "test.yaml")
    app = create_app(config)
    with serving(app, **kwargs) as server:
        yield app, server


GatewayRunner = Callable[..., AbstractContextManager[tuple[GatewayApp, ServerThread]]]


@pytest.fixture
def gateway() -> GatewayRunner:
    return run_gateway


def http_client(url: str, timeout: float = 30) -> httpx.Client:
    """An httpx client with TCP_NODELAY: httpx writes a request's headers and body separately, and on a
    kept-alive connection Nagle's algorithm then waits for the server's delayed ACK (40 ms a request)."""
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    return httpx.Client(base_url=url, timeout=timeout, transport=httpx.HTTPTransport(socket_options=nodelay))


#: SDK clients made during the current test: closed at its end (see ``_close_sdk_clients``)
_SDK_CLIENTS: list[openai.OpenAI] = []


def sdk(url: str, **kwargs: Any) -> openai.OpenAI:
    client = openai.OpenAI(base_url=url + "/v1", api_key=kwargs.pop("api_key", "test-key"), max_retries=0, **kwargs)
    _SDK_CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """Tests make SDK clients inline (``sdk(url).models.list()``); their kept-alive sockets are closed when
    the test ends, not whenever the garbage collector happens to find them (as an unclosed-socket
    ResourceWarning in whichever later test is running)."""
    yield
    while _SDK_CLIENTS:
        _SDK_CLIENTS.pop().close()


def fake_provider_yaml(url: str, *, name: str = "up", extra: str = "") -> str:
    """A provider block pointing at a fake upstream."""
    return f"  {name}: {{type: openai, base_url: {url}/v1, api_key: sk-operator-secret-0123456789{extra}}}\n"


@pytest.fixture(autouse=True)
def _ledger_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's gateways keep their default SQLite ledger in a directory of their own."""
    monkeypatch.setenv("FUSION_GATEWAY_DATA", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the test session; each test makes its own database in it."""
    with postgres_cluster() as cluster:
        yield cluster
