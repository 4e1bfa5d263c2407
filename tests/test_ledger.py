"""The ledger on its embedded default, SQLite: every request remembered, read back by id, stats, spend,
export; never on the request's path (a full queue drops and counts); schema versioned and checked."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.books.ledger import migrate
from gateway.cli import main
from gateway.compare.dataset import load_dataset
from gateway.config import parse_config
from gateway.wire.errors import ConfigError
from tests.conftest import GatewayRunner
from tests.support.fakes import FakeUpstream, answer
from tests.support.procs import GatewayProcess
from tests.support.servers import wait_until
from tests.test_accounting import COST_A, COST_B, COST_C, COST_J, HI, M, families, members, usage

CLIENT = "sk-client-aaaaaaaaaaaaaaaa"
OTHER = "sk-client-bbbbbbbbbbbbbbbb"
ADMIN = "sk-admin-cccccccccccccccccc"

CONFIG = """
server: {{max_body_bytes: 4000}}
providers:
  up: {{type: openai, base_url: '{url}/v1', retry: {{max_retries: 0}}}}
models:
  a: {{provider: up, price: {{input: 0.15, output: 0.60, cached_input: 0.075}}}}
  b: {{provider: up, price: {{input: 0.25, output: 1.00}}}}
  c: {{provider: up, price: {{input: 0.10, output: 0.40}}}}
  j: {{provider: up, price: {{input: 2.50, output: 10.00}}}}
  ft: {{provider: up, price: {{input: 0.30, output: 1.20}}}}
pools:
  p: {{mode: best-of, members: [a, b, c], judge: {{model: j}}}}
  sampled:
    mode: best-of
    members: [a, b, c]
    judge: {{model: j}}
    baseline: {{model: ft, sample_rate: 1.0, compare: judge}}
auth:
  admin_key: {admin}
  keys:
    - {{name: web, key: {client}, pools: ["*"], models: [a]}}
    - {{name: batch, key: {other}, pools: [p], models: [], rpm: 1}}
ledger: {ledger}
"""


def cfg(fake: FakeUpstream, ledger: str = "{url: null}") -> str:
    return CONFIG.format(url=fake.url, client=CLIENT, other=OTHER, admin=ADMIN, ledger=ledger)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(url: str, model: str, key: str = CLIENT, rid: str | None = None, **extra: Any) -> httpx.Response:
    headers = bearer(key) | ({"x-request-id": rid} if rid else {})
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": HI, **extra},
                      headers=headers, timeout=20)


def get(url: str, path: str, key: str = CLIENT, **params: Any) -> httpx.Response:
    return httpx.get(url + path, headers=bearer(key), params=params, timeout=20)


def dec(resp: httpx.Response) -> Any:
    return resp.json(parse_float=Decimal)


def test_a_pool_request_is_remembered_with_every_call_and_its_exact_cost(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    members(fake)
    with gateway(cfg(fake)) as (_, srv):
        resp = chat(srv.url, "p", rid="req-pool-1", stream=True)
        assert resp.status_code == 200
        rec = dec(get(srv.url, "/v1/fusion/requests/req-pool-1"))
    assert (rec["kind"], rec["key"], rec["model"], rec["pool"], rec["mode"], rec["status"], rec["stream"]) == (
        "pool", "web", "p", "p", "best-of", 200, True)
    assert rec["cost_usd"] == COST_A + COST_B + COST_C + COST_J
    assert rec["cost_by_role"] == {"member": COST_A + COST_B + COST_C, "judge": COST_J}
    assert rec["winner"] == "b" and rec["judge"]["status"] == "ok" and rec["judge"]["verdict"]["winner"] == "b"
    assert rec["degraded"] is False and rec["error_code"] is None
    lat = rec["latency_ms"]
    assert float(lat["total"]) == pytest.approx(float(lat["fanout"] + lat["judge"] + lat["gateway"]), abs=0.01)
    roles = [(c["role"], c["member"], c["model"], c["status"]) for c in rec["calls"]]
    assert sorted(roles[:3], key=lambda r: r[1]) == [("member", 0, "a", "ok"), ("member", 1, "b", "ok"),
                                                     ("member", 2, "c", "ok")]
    assert roles[3:] == [("judge", None, "j", "ok")]
    a = next(c for c in rec["calls"] if c["model"] == "a")
    assert a["cost_usd"] == COST_A and a["provider"] == "up" and a["attempts"] == 1
    assert a["usage"] == {"prompt_tokens": 1000, "completion_tokens": 200, "cached_tokens": 400,
                          "reasoning_tokens": 50}
    assert 0 < a["ttfb_ms"] <= a["latency_ms"]
    assert rec["messages"] is None and rec["answer"] is None  # content is off by default


def test_refused_and_passthrough_requests_are_remembered_with_their_status(
    gateway: GatewayRunner, fake: FakeUpstream
) -> None:
    members(fake)
    fake.behaviours["a"] = answer("hello", usage=usage(10, 5))
    with gateway(cfg(fake)) as (_, srv):
        assert chat(srv.url, "a", rid="ok-1").status_code == 200
        assert chat(srv.url, "a", key="sk-wrong", rid="r401").status_code == 401
        assert chat(srv.url, "b", rid="denied").status_code == 404  # a name the key may not use
        assert chat(srv.url, "nope", rid="r404").status_code == 404
        assert chat(srv.url, "a", rid="r400", n="x").status_code == 400
        big = [{"role": "user", "content": "x" * 5000}]
        assert httpx.post(srv.url + "/v1/chat/completions", json={"model": "a", "messages": big},
                          headers=bearer(CLIENT) | {"x-request-id": "r413"}).status_code == 413
        assert chat(srv.url, "p", key=OTHER, rid="batch-1").status_code == 200
        assert chat(srv.url, "p", key=OTHER, rid="r429").status_code == 429
        listed = get(srv.url, "/v1/fusion/requests", key=ADMIN, limit=20).json()["data"]
        one = dec(get(srv.url, "/v1/fusion/requests/ok-1"))
    statuses = {r["request_id"]: (r["kind"], r["status"], r["error_code"], r["key"]) for r in listed}
    assert statuses == {
        "ok-1": ("passthrough", 200, None, "web"),
        "r401": ("refused", 401, "invalid_api_key", "anonymous"),
        "denied": ("refused", 404, "model_not_found", "web"),
        "r404": ("refused", 404, "model_not_found", "web"),
        "r400": ("refused", 400, statuses["r400"][2], "web"),
        "r413": ("refused", 413, statuses["r413"][2], "web"),
        "batch-1": ("pool", 200, None, "batch"),
        "r429": ("refused", 429, statuses["r429"][2], "batch"),
    }
    assert one["cost_usd"] == (10 * Decimal("0.15") + 5 * Decimal("0.60")) / M
    assert [(c["role"], c["model"], c["status"]) for c in one["calls"]] == [("passthrough", "a", "ok")]


def test_keys_see_only_their_own_requests_and_spend(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    with gateway(cfg(fake)) as (_, srv):
        assert chat(srv.url, "p", key=OTHER, rid="theirs").status_code == 200
        mine = get(srv.url, "/v1/fusion/requests/theirs", key=CLIENT)
        own = get(srv.url, "/v1/fusion/requests/theirs", key=OTHER)
        admin = get(srv.url, "/v1/fusion/requests/theirs", key=ADMIN)
        anonymous = httpx.get(srv.url + "/v1/fusion/requests/theirs")
        spend_mine = get(srv.url, "/v1/fusion/spend", key=CLIENT, group_by="key").json()["data"]
    assert mine.status_code == 404
    assert mine.json()["error"] == {"message": "no request 'theirs' in the ledger", "type": "invalid_request_error",
                                    "param": "request_id", "code": "request_not_found"}
    assert own.status_code == 200 and admin.status_code == 200 and own.json()["key"] == "batch"
    assert anonymous.status_code == 401
    assert spend_mine == []


def test_the_shadow_baseline_and_its_verdict_link_to_the_request(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["ft"] = answer("use timsort", usage=usage(1000, 50))
    with gateway(cfg(fake)) as (_, srv):
        assert chat(srv.url, "sampled", rid="shadowed").status_code == 200

        def shadow() -> Any:
            return dec(get(srv.url, "/v1/fusion/requests/shadowed")).get("baseline")

        assert wait_until(lambda: shadow() is not None, timeout=5)
        base = shadow()
    assert (base["kind"], base["parent_id"], base["model"], base["pool"], base["status"]) == (
        "baseline", "shadowed", "ft", "sampled", 200)
    assert base["comparison"] == "fusion"
    assert [c["role"] for c in base["calls"]] == ["baseline", "comparison", "comparison"]
    base_cost = (1000 * Decimal("0.30") + 50 * Decimal("1.20")) / M
    assert base["cost_by_role"] == {"member": base_cost, "judge": 2 * COST_J}
    assert base["cost_usd"] == base_cost + 2 * COST_J
    assert float(base["cost_ratio"]) == pytest.approx(float((COST_A + COST_B + COST_C + COST_J) / base_cost), rel=1e-6)


def test_spend_is_exact_by_key_pool_model_and_day(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    fake.behaviours["a"] = answer("merge sort", usage=usage(1000, 200, cached=400, reasoning=50))
    with gateway(cfg(fake)) as (_, srv):
        for _ in range(3):
            assert chat(srv.url, "p").status_code == 200
        assert chat(srv.url, "a").status_code == 200
        assert chat(srv.url, "p", key=OTHER).status_code == 200
        spend = {g: dec(get(srv.url, "/v1/fusion/spend", key=ADMIN, group_by=g, since="1h"))["data"]
                 for g in ("key", "pool", "model", "day")}
        bad = get(srv.url, "/v1/fusion/spend", key=ADMIN, group_by="colour")
        bad_since = get(srv.url, "/v1/fusion/spend", key=ADMIN, since="yesterday")
    pool = COST_A + COST_B + COST_C + COST_J
    assert spend["key"] == [{"key": "web", "cost_usd": 3 * pool + COST_A, "requests": 4, "unknown_cost": 0},
                            {"key": "batch", "cost_usd": pool, "requests": 1, "unknown_cost": 0}]
    assert spend["pool"] == [{"pool": "p", "cost_usd": 4 * pool, "requests": 4, "unknown_cost": 0},
                             {"pool": "a", "cost_usd": COST_A, "requests": 1, "unknown_cost": 0}]
    by_model = {r["model"]: (r["cost_usd"], r["calls"]) for r in spend["model"]}
    assert by_model == {"a": (5 * COST_A, 5), "b": (4 * COST_B, 4), "c": (4 * COST_C, 4), "j": (4 * COST_J, 4)}
    assert len(spend["day"]) == 1 and spend["day"][0]["cost_usd"] == 4 * pool + COST_A
    assert bad.status_code == 400 and bad.json()["error"]["message"] == (
        "group_by must be one of key, pool, model, day, not 'colour'")
    assert bad_since.status_code == 400 and bad_since.json()["error"]["param"] == "since"


def test_stats_come_from_the_ledger_and_survive_a_restart(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    members(fake)
    with gateway(cfg(fake)) as (_, srv):
        for _ in range(3):
            assert chat(srv.url, "p").status_code == 200
        before = get(srv.url, "/v1/fusion/stats", pool="p").json()
    with gateway(cfg(fake)) as (_, srv):  # a new process-lifetime: same data directory, same ledger file
        after = get(srv.url, "/v1/fusion/stats", pool="p").json()
        assert chat(srv.url, "p").status_code == 200
        more = get(srv.url, "/v1/fusion/stats", pool="p").json()
        none_recent = get(srv.url, "/v1/fusion/stats", pool="p", since="2026-01-01T00:00:00+00:00").json()
    assert [p["pool"] for p in before["pools"]] == ["p"]
    assert before["pools"][0]["requests"] == {"ok": 3, "degraded": 0, "error": 0, "total": 3}
    assert after["pools"] == before["pools"]
    assert more["pools"][0]["requests"]["ok"] == 4
    assert more["pools"][0]["fusion"]["mean_cost_usd"] == pytest.approx(
        float(COST_A + COST_B + COST_C + COST_J), abs=1e-9)
    assert none_recent["pools"][0]["requests"]["total"] in (0, 4)  # 0 only if run before that date


def test_with_ledger_none_nothing_is_written_and_the_readers_say_so(
    gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path
) -> None:
    members(fake)
    with gateway(cfg(fake, "none")) as (app, srv):
        assert app.gateway.ledger is None
        assert chat(srv.url, "p", rid="kept").status_code == 200
        stats = get(srv.url, "/v1/fusion/stats").json()
        receipt = dec(get(srv.url, "/v1/fusion/requests/kept"))
        unknown = get(srv.url, "/v1/fusion/requests/x")
        listed = get(srv.url, "/v1/fusion/requests", key=ADMIN)
        spend = get(srv.url, "/v1/fusion/spend", key=ADMIN)
    assert stats["pools"][0]["requests"]["ok"] == 1  # the in-memory store answers
    # one request is looked up from this process's receipts: the same fields, no calls
    assert (receipt["object"], receipt["request_id"], receipt["model"], receipt["status"]) == (
        "fusion.request", "kept", "p", 200)
    assert receipt["cost_usd"] == COST_A + COST_B + COST_C + COST_J == receipt["fusion"]["cost_usd"]
    assert "calls" not in receipt
    assert unknown.status_code == 404 and unknown.json()["error"] == {
        "message": "no recent request 'x' of this key on this gateway process (the last 1000 are kept)",
        "type": "invalid_request_error", "param": "request_id", "code": "request_not_found"}
    for off in (listed, spend):
        assert off.status_code == 404 and off.json()["error"]["code"] == "ledger_off"


def test_a_full_queue_drops_and_counts_and_never_blocks_a_request(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("hello")
    ledger = "{queue_max: 2, flush_interval_s: 3600, batch_size: 1000}"
    with gateway(cfg(fake, ledger)) as (app, srv):
        codes = [chat(srv.url, "a").status_code for _ in range(5)]
        text = httpx.get(srv.url + "/metrics").text
        assert app.gateway.ledger is not None and app.gateway.ledger.depth == 2
        listed = get(srv.url, "/v1/fusion/requests", key=ADMIN).json()["data"]  # flushes the two queued
        text_after = httpx.get(srv.url + "/metrics").text
    assert codes == [200] * 5
    assert families(text)["fusion_ledger_dropped"].samples[0].value == 3
    assert len(listed) == 2
    written = families(text_after)["fusion_ledger_written"].samples[0].value
    depth = families(text_after)["fusion_ledger_queue_depth"].samples[0].value
    assert (written, depth) == (2, 0)
    assert families(text_after)["fusion_ledger_flush_duration_seconds"] is not None


def test_graceful_shutdown_writes_what_is_queued(gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path) -> None:
    fake.behaviours["a"] = answer("hello")
    db = tmp_path / "l.db"
    with gateway(cfg(fake, f"{{url: 'sqlite:///{db}', flush_interval_s: 3600}}")) as (app, srv):
        for _ in range(7):
            assert chat(srv.url, "a").status_code == 200
        ledger = app.gateway.ledger
        assert ledger is not None
        # each record is handed over just after its answer's last byte: the last may be a moment behind
        assert wait_until(lambda: ledger.depth == 7, timeout=5)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_requests").fetchone() == (7,)
        assert conn.execute("SELECT count(*) FROM ledger_calls").fetchone() == (7,)


def test_export_writes_fine_tuning_jsonl_that_compare_accepts(
    gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members(fake)
    fake.behaviours["ft"] = sequence_of("use timsort")
    db = tmp_path / "l.db"
    with gateway(cfg(fake, f"{{url: 'sqlite:///{db}', content: true}}")) as (_, srv):
        assert chat(srv.url, "sampled", rid="s1").status_code == 200
        assert chat(srv.url, "p", rid="p1").status_code == 200
        assert wait_until(lambda: dec(get(srv.url, "/v1/fusion/requests/s1")).get("baseline") is not None, timeout=5)
    capsys.readouterr()
    assert main(["export", "--db", f"sqlite:///{db}", "--pool", "p", "--since", "1h"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert lines == [{"messages": [*HI, {"role": "assistant", "content": "quicksort BEST"}]}]
    assert out.err.strip() == "1 examples of pool 'p'"
    assert main(["export", "--db", f"sqlite:///{db}", "--pool", "sampled", "--winners-only"]) == 0
    dataset = tmp_path / "train.jsonl"
    dataset.write_text(capsys.readouterr().out)
    items = load_dataset(dataset)
    assert len(items) == 1 and items[0].reference == "quicksort BEST"


def sequence_of(text: str) -> Any:
    return answer(text, usage=usage(1000, 50))


def test_report_reads_the_database_without_a_gateway(
    gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members(fake)
    fake.behaviours["ft"] = answer("use timsort", usage=usage(1000, 50))
    db = tmp_path / "l.db"
    with gateway(cfg(fake, f"'sqlite:///{db}'")) as (_, srv):
        assert chat(srv.url, "sampled", rid="s1").status_code == 200
        assert chat(srv.url, "p").status_code == 200
        assert wait_until(lambda: dec(get(srv.url, "/v1/fusion/requests/s1")).get("baseline") is not None, timeout=5)
    capsys.readouterr()
    assert main(["report", "--db", f"sqlite:///{db}", "--since", "7d"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["pool", "mode", "ok/degr/err"]
    rows = {line.split()[0]: line.split() for line in out[2:4]}
    assert rows["p"][1:3] == ["best-of", "1/0/0"] and rows["sampled"][1:3] == ["best-of", "1/0/0"]
    assert "p: no baseline configured" in out
    assert next(x for x in out if x.startswith("sampled: ")).endswith("wins 100% / ties 0% / loses 0% (n=1)")


def test_db_upgrade_migrates_an_empty_database_and_a_newer_schema_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeUpstream
) -> None:
    db = tmp_path / "fresh.db"
    url = f"sqlite:///{db}"
    assert main(["db", "upgrade", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == f"{url}: schema at revision {migrate.head()} (latest)"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"ledger_requests", "ledger_calls", "ledger_schema_version"} <= tables
        conn.execute("UPDATE ledger_schema_version SET version_num = '9999_future'")
    members(fake)
    gw = GatewayProcess(cfg(fake, f"'{url}'"), tmp_path)
    try:
        assert gw.proc.wait(timeout=30) != 0
    finally:
        gw.stop()
    assert ("the ledger database is at schema revision '9999_future', newer than this gateway knows "
            f"(latest: '{migrate.head()}'): upgrade the gateway") in gw.log_path.read_text()
    assert main(["db", "upgrade", "--db", url]) == 1
    assert "newer than this gateway knows" in capsys.readouterr().err


def test_an_older_schema_is_not_migrated_when_migrate_is_off(tmp_path: Path, fake: FakeUpstream) -> None:
    members(fake)
    gw = GatewayProcess(cfg(fake, f"{{url: 'sqlite:///{tmp_path}/x.db', migrate: false}}"), tmp_path)
    try:
        assert gw.proc.wait(timeout=30) != 0
    finally:
        gw.stop()
    assert ("older than this gateway's '0001': run 'fusion-gateway db upgrade' (ledger.migrate is off)"
            in gw.log_path.read_text())


def test_the_start_up_log_says_where_the_default_ledger_is(tmp_path: Path, fake: FakeUpstream) -> None:
    members(fake)
    env = {"FUSION_GATEWAY_DATA": str(tmp_path / "data")}
    with_default = cfg(fake).replace("ledger: {url: null}\n", "")
    gw = GatewayProcess(with_default, tmp_path, env=env)
    try:
        assert wait_until(lambda: "ledger: sqlite:///" in gw.log_path.read_text(), timeout=30)
    finally:
        gw.stop()
    assert f"ledger: sqlite:///{tmp_path}/data/ledger.db" in gw.log_path.read_text()
    assert (tmp_path / "data" / "ledger.db").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://u@h/db", "ledger.url: unsupported ledger URL 'mysql://u@h/db' (use sqlite:///PATH, "
                           "postgresql://USER@HOST:PORT/DB, or none)"),
        ("postgresql://u@/db", "ledger.url: ledger URL 'postgresql://u@/db' needs a host and a database "
                               "(postgresql://USER@HOST:PORT/DB)"),
        ("sqlite://", "ledger.url: ledger URL 'sqlite://' names no file (sqlite:///relative/path or "
                      "sqlite:////absolute/path)"),
    ],
)
def test_a_bad_ledger_url_is_a_config_error_with_file_and_line(value: str, message: str) -> None:
    text = f"server: {{port: 8000}}\nmodels: {{}}\n\nledger: {value}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config/gateway.yaml")
    assert info.value.message == f"config/gateway.yaml:4: {message}"
    nested = f"server: {{port: 8000}}\nledger:\n  content: true\n  url: {value}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(nested, "config/gateway.yaml")
    assert info.value.message == f"config/gateway.yaml:4: {message}"


def test_the_cli_reports_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--db", "mysql://x/y"]) == 1
    assert "unsupported ledger URL 'mysql://x/y'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["report", "--db", "sqlite:////tmp/none.db", "--since", "soon"])
    assert info.value.code == 2
    assert "--since: since must be a duration like 24h" in capsys.readouterr().err


def test_an_unusable_ledger_file_does_not_stop_the_gateway(gateway: GatewayRunner, fake: FakeUpstream) -> None:
    fake.behaviours["a"] = answer("hello")
    with gateway(cfg(fake, "{url: 'sqlite:////proc/no-such-dir/ledger.db', flush_interval_s: 0.05}")) as (app, srv):
        codes = [chat(srv.url, "a", rid=f"r{i}").status_code for i in range(3)]
        assert wait_until(lambda: "fusion_ledger_write_errors_total" in httpx.get(srv.url + "/metrics").text)
        assert app.gateway.ledger is not None and app.gateway.ledger.depth == 3  # kept for when it works
        # while the database does not answer, a request is still looked up, in this process's receipts
        looked_up = get(srv.url, "/v1/fusion/requests/r2")
        theirs = get(srv.url, "/v1/fusion/requests/r2", key=OTHER)
    assert codes == [200, 200, 200]
    assert looked_up.status_code == 200 and (looked_up.json()["model"], looked_up.json()["status"]) == ("a", 200)
    assert theirs.status_code == 404 and theirs.json()["error"]["message"] == "no request 'r2' in the ledger"


def test_export_skips_the_answers_recorded_while_content_was_off(
    gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members(fake)
    db = tmp_path / "l.db"
    with gateway(cfg(fake, f"{{url: 'sqlite:///{db}', content: false}}")) as (_, srv):
        assert chat(srv.url, "p", rid="without").status_code == 200
    with gateway(cfg(fake, f"{{url: 'sqlite:///{db}', content: true}}")) as (_, srv):
        assert chat(srv.url, "p", rid="with").status_code == 200
    with sqlite3.connect(db) as conn:
        # no prompt kept is no value at all (SQL NULL), not the JSON text 'null'
        assert conn.execute(
            "SELECT typeof(messages), typeof(answer) FROM ledger_requests WHERE request_id = 'without'"
        ).fetchone() == ("null", "null")
    capsys.readouterr()
    assert main(["export", "--db", f"sqlite:///{db}", "--pool", "p"]) == 0
    out = capsys.readouterr()
    assert [json.loads(x) for x in out.out.splitlines()] == [
        {"messages": [*HI, {"role": "assistant", "content": "quicksort BEST"}]}
    ]
    assert out.err.strip() == "1 examples of pool 'p'"


def test_row_keys_are_unique_and_follow_the_order_records_were_written(
    gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path
) -> None:
    """Keys growing with time are appended to the primary key's index, not scattered over it; a gateway
    started later (another replica, a restart) writes keys after the earlier one's."""
    fake.behaviours["a"] = answer("hello")
    db = tmp_path / "l.db"
    written = []
    for run in range(2):
        with gateway(cfg(fake, f"{{url: 'sqlite:///{db}', flush_interval_s: 3600}}")) as (_, srv):
            for i in range(4):
                rid = f"r{run}{i}"
                assert chat(srv.url, "a", rid=rid).status_code == 200
                written.append(rid)
    with sqlite3.connect(db) as conn:
        requests = conn.execute("SELECT request_id, row_id FROM ledger_requests ORDER BY row_id").fetchall()
        calls = conn.execute("SELECT request_id, row_id, request_row FROM ledger_calls ORDER BY row_id").fetchall()
    assert [rid for rid, _ in requests] == written
    assert [rid for rid, _, _ in calls] == written
    keys = [k for _, k in requests] + [k for _, k, _ in calls]
    assert len(set(keys)) == len(keys) == 16 and all(len(k) == 32 for k in keys)
    assert [row for _, _, row in calls] == [k for _, k in requests]
