"""The ledger on a real PostgreSQL (a throwaway cluster per test session): a fleet writing one database,
migrations from empty, day partitions and their retention, and the database going away under traffic."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa

from gateway.books.ledger import migrate
from gateway.books.ledger.store import LedgerStore
from gateway.cli import main
from tests.conftest import GatewayRunner, PostgresCluster
from tests.support.fakes import FakeUpstream, answer
from tests.support.procs import gateway_process
from tests.support.servers import wait_until
from tests.test_accounting import HI, families

pytestmark = pytest.mark.services

SIM = """
server: {{watch_config: false}}
providers:
  sim:
    type: simulator
    profiles:
      fast: {{ttft_ms: 5, tokens_per_s: 5000}}
models:
  m1: {{provider: sim, model: fast, price: {{input: 0.10, output: 0.40}}}}
  m2: {{provider: sim, model: fast, price: {{input: 0.20, output: 0.80}}}}
pools:
  duo: {{mode: best-of, members: [m1, m2], judge: {{model: m1}}}}
ledger: {{url: '{url}', flush_interval_s: 0.2}}
"""


def fresh_db(pg: PostgresCluster) -> str:
    return pg.create_database("l" + secrets.token_hex(4))


def count(url: str, sql: str) -> int:
    async def run() -> int:
        store = LedgerStore(url)
        try:
            async with store.engine.connect() as conn:
                return int((await conn.execute(sa.text(sql))).scalar_one())
        finally:
            await store.aclose()

    return anyio.run(run)


def test_migrations_run_up_from_an_empty_database(
    postgres: PostgresCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh_db(postgres)
    assert main(["db", "upgrade", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{url}: schema at revision {migrate.head()} (latest)")
    assert count(url, "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                      "WHERE c.relname IN ('ledger_requests', 'ledger_calls')") == 2
    assert main(["db", "upgrade", "--db", url]) == 0  # a second run changes nothing


def test_two_gateway_processes_write_one_database_and_one_report_sees_both(
    postgres: PostgresCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fresh_db(postgres)
    config = SIM.format(url=url)
    with gateway_process(config, tmp_path, name="one") as one, gateway_process(config, tmp_path, name="two") as two:
        for gw, n in ((one, 3), (two, 2)):
            for _ in range(n):
                r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "duo", "messages": HI}, timeout=20)
                assert r.status_code == 200
        r = httpx.post(two.url + "/v1/chat/completions", json={"model": "m1", "messages": HI},
                       headers={"x-request-id": "asked-two"}, timeout=20)
        assert r.status_code == 200
        # every reader sees the whole fleet: process one answers for a request process two served
        assert wait_until(lambda: httpx.get(one.url + "/v1/fusion/requests/asked-two").status_code == 200, timeout=10)
        stats = httpx.get(one.url + "/v1/fusion/stats").json()["pools"][0]
    assert stats["requests"] == {"ok": 5, "degraded": 0, "error": 0, "total": 5}
    capsys.readouterr()
    assert main(["report", "--db", url, "--since", "1h"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:3] == ["duo", "best-of", "5/0/0"]
    assert count(url, "SELECT count(*) FROM ledger_calls WHERE role = 'member'") == 10
    day = datetime.now(UTC).strftime("%Y%m%d")
    assert count(url, f"SELECT count(*) FROM pg_class WHERE relname = 'ledger_requests_p{day}'") == 1


def test_retention_drops_whole_day_partitions(postgres: PostgresCluster) -> None:
    url = fresh_db(postgres)
    from gateway.books.ledger.entry import LedgerEntry

    now = datetime.now(UTC)

    async def run() -> tuple[int, int]:
        store = LedgerStore(url)
        try:
            await store.write([LedgerEntry(request_id=f"r{d}", kind="refused", key="k", status=401,
                                           created=(now - timedelta(days=d)).timestamp()) for d in (0, 3, 10)])
            dropped = await store.prune(5, now=now)
            async with store.engine.connect() as conn:
                left = (await conn.execute(sa.text("SELECT count(*) FROM ledger_requests"))).scalar_one()
            return dropped, int(left)
        finally:
            await store.aclose()

    dropped, left = anyio.run(run)
    assert (dropped, left) == (2, 2)  # the 10-day-old day's two partitions (requests, calls) went whole


def test_a_debate_record_reads_back_from_postgresql_as_it_was_answered(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """Rows go in by binary COPY: every JSON column (the ``fusion`` object with its exact costs, the
    rounds' latencies, the prompt and the answer) must read back as the caller was sent it."""
    url = fresh_db(postgres)
    # two members that answer differently (another simulated model), so the debate runs its rounds
    pools = ("  m3: {provider: sim, model: other, price: {input: 0.30, output: 1.20}}\npools:\n"
             "  talk: {mode: debate, members: [m1, m3], judge: {model: m1}, debate: {rounds: 2, final: merge}}\n")
    config = SIM.format(url=url).replace("ledger: {url:", "ledger: {content: true, url:").replace("pools:\n", pools)
    messages = [{"role": "system", "content": "Be brief. \u00e9\u2713"}, *HI]
    with gateway_process(config, tmp_path) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "talk", "messages": messages},
                       headers={"x-request-id": "deb-1"}, timeout=30)
        assert r.status_code == 200
        sent = r.json()
        assert wait_until(lambda: httpx.get(gw.url + "/v1/fusion/requests/deb-1").status_code == 200, timeout=10)
        rec = httpx.get(gw.url + "/v1/fusion/requests/deb-1").json()
    assert rec["fusion"] == sent["fusion"]
    assert rec["messages"] == messages
    assert rec["answer"]["content"] == sent["choices"][0]["message"]["content"]
    assert rec["latency_ms"]["rounds"] == sent["fusion"]["latency_ms"]["rounds"]
    rounds = len(rec["latency_ms"]["rounds"])
    assert rounds >= 1
    assert rec["cost_usd"] == sent["fusion"]["cost_usd"]
    assert [c["role"] for c in rec["calls"]].count("debate_round") == 2 * rounds


def test_postgres_stopped_under_traffic(
    postgres: PostgresCluster, gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    url = fresh_db(postgres)
    fake.behaviours["a"] = answer("hello")
    config = f"""
providers:
  up: {{type: openai, base_url: '{fake.url}/v1'}}
models:
  a: {{provider: up, price: {{input: 1, output: 1}}}}
ledger: {{url: '{url}', flush_interval_s: 0.1, queue_max: 20}}
"""
    with gateway(config) as (app, srv):
        ledger = app.gateway.ledger
        assert ledger is not None

        def post(rid: str) -> int:
            return httpx.post(srv.url + "/v1/chat/completions", json={"model": "a", "messages": HI},
                              headers={"x-request-id": rid}, timeout=20).status_code

        assert post("before") == 200
        # written, not only "nothing queued": the record is handed over just after the answer's last byte,
        # so an empty queue seen right after the answer may be the moment before it arrives
        assert wait_until(lambda: ledger.depth == 0
                          and count(url, "SELECT count(*) FROM ledger_requests WHERE request_id = 'before'") == 1,
                          timeout=5)
        postgres.stop()
        try:
            codes = [post(f"during-{i}") for i in range(25)]
            assert wait_until(lambda: "fusion_ledger_write_errors_total" in httpx.get(srv.url + "/metrics").text
                              and ledger.depth == 20, timeout=15)
            metrics = families(httpx.get(srv.url + "/metrics").text)
        finally:
            postgres.start()
        assert codes == [200] * 25  # every request succeeded while the database was gone
        assert metrics["fusion_ledger_dropped"].samples[0].value == 5  # past the bound of 20: counted
        assert metrics["fusion_ledger_write_errors"].samples[0].value >= 1
        assert wait_until(lambda: ledger.depth == 0, timeout=30)  # written once it came back
    assert count(url, "SELECT count(*) FROM ledger_requests") == 21
    assert count(url, "SELECT count(*) FROM ledger_requests WHERE request_id = 'during-19'") == 1
