"""``fusion-gateway compare`` against a real gateway on loopback: the figures it reports are the ones a
person would count by hand from its per-item results, an interrupted run resumes without asking again,
and transient errors are retried."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli import main
from tests.conftest import GatewayRunner, fake_provider_yaml
from tests.support.fakes import FakeUpstream, completion, error_reply, json_reply, sequence
from tests.support.servers import wait_until

ROOT = Path(__file__).resolve().parent.parent
Z = 1.959963984540054

SIM = """
providers:
  sim:
    type: simulator
    seed: 11
    profiles:
      a:     {ttft_ms: 5, tokens_per_s: 4000, accuracy: 0.7}
      b:     {ttft_ms: 5, tokens_per_s: 4000, accuracy: 0.7}
      c:     {ttft_ms: 5, tokens_per_s: 4000, accuracy: 0.7}
      judge: {ttft_ms: 5, tokens_per_s: 4000}
      ft:    {ttft_ms: 5, tokens_per_s: 4000, accuracy: 0.76}
models:
  m-a:     {provider: sim, model: a, price: {input: 0.15, output: 0.60}}
  m-b:     {provider: sim, model: b, price: {input: 0.25, output: 1.00}}
  m-c:     {provider: sim, model: c, price: {input: 0.10, output: 0.40}}
  m-judge: {provider: sim, model: judge, price: {input: 2.50, output: 10.00}}
  m-ft:    {provider: sim, model: ft, price: {input: 0.30, output: 1.20}}
  m-free:  {provider: sim, model: a}
pools:
  trio:
    mode: best-of
    members: [m-a, m-b, m-c]
    judge: {model: m-judge, swap: true}
  unpriced:
    mode: best-of
    members: [m-a, m-free]
    judge: {model: m-judge}
"""

QUESTIONS = [(17, 23), (48, 12), (91, 7), (35, 35), (62, 19), (27, 44), (83, 16), (56, 71), (14, 98), (39, 26)]


def arithmetic(path: Path, pairs: list[tuple[int, int]], *, extra: tuple[str, ...] = ()) -> Path:
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} * {b}?"},
                    {"role": "assistant", "content": f"The answer is {a * b}."},
                ]
            }
        )
        for a, b in pairs
    ]
    path.write_text("\n".join([*lines, *extra]) + "\n", encoding="utf-8")
    return path


def received(url: str) -> Counter[str]:
    """Chat completion requests the gateway has answered, per model or pool name (its own metrics)."""
    counts: Counter[str] = Counter()
    for line in httpx.get(url + "/metrics").text.splitlines():
        m = re.match(r"fusion_requests_total\{(.*)\} (\S+)", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            counts[labels["pool"]] += int(float(m.group(2)))
    return counts


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q / 100 * len(ordered)) - 1]


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return (0.0 if k == 0 else centre - half, 1.0 if k == n else centre + half)


def test_full_run_figures_equal_hand_computation(
    gateway: GatewayRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_reference = json.dumps({"messages": [{"role": "user", "content": "Tell me about fusion."}]})
    data = arithmetic(tmp_path / "data.jsonl", QUESTIONS, extra=(no_reference,))
    out = tmp_path / "out"
    argv = [
        "compare",
        "--dataset",
        str(data),
        "--pool",
        "trio",
        "--baseline",
        "m-ft",
        "--scorer",
        "numeric",
        "--out",
        str(out),
        "--concurrency",
        "4",
        "--baseline-training-usd",
        "25",
    ]
    with gateway(SIM) as (_, srv):
        assert main([*argv, "--url", srv.url, "--api-key", "sk-never-in-a-report"]) == 0
        first = received(srv.url)
        for written in out.iterdir():  # the key is sent, never written down
            assert "sk-never-in-a-report" not in written.read_text(), written.name
        assert "--api-key ***" in (out / "report.md").read_text()
        # A rerun of a finished run asks nothing again, judge included, and rebuilds the same report.
        summary_before = (out / "summary.json").read_text()
        assert main([*argv, "--url", srv.url + "/v1/"]) == 0
        assert received(srv.url) == first
    err = capsys.readouterr().err
    assert "compare: 33 to do\n" in err  # 11 items x 2 systems + 11 judgements
    assert "sk-never-in-a-report" not in err
    assert "compare: 0 to do (33 already done in an earlier run)\n" in err

    results = read_jsonl(out / "results.jsonl")
    judgements = read_jsonl(out / "judgements.jsonl")
    assert len(results) == 22 and len({r["key"] for r in results}) == 22 and len(judgements) == 11
    # Every item reached the gateway once per system, plus two judge calls per judged (non-identical) pair.
    judge_calls = sum(len(j["votes"]) for j in judgements)
    assert first == Counter({"trio": 11, "m-ft": 11, "m-judge": judge_calls})

    summary = json.loads((out / "summary.json").read_text(), parse_float=Decimal)
    assert json.loads(summary_before, parse_float=Decimal)["systems"] == summary["systems"]
    by_system: dict[str, list[dict[str, Any]]] = {"trio": [], "m-ft": []}
    for r in results:
        by_system[r["system"]].append(r)
    figures: dict[str, dict[str, Any]] = {}
    for name, rows in by_system.items():
        assert all(r["status"] == "ok" for r in rows)
        # Scored by hand: the answer must end with "The answer is <product>."; the item without a reference is left out.
        lines = {r["line"]: r for r in rows}
        correct = sum(
            1 for i, (a, b) in enumerate(QUESTIONS, start=1) if lines[i]["answer"].endswith(f"The answer is {a * b}.")
        )
        s = summary["systems"][name]
        assert (s["scored"], s["correct"], s["failed"], s["answered"]) == (10, correct, 0, 11)
        lo, hi = wilson(correct, 10)
        assert [float(x) for x in s["accuracy_ci95"]] == [lo, hi]  # the documented formula, to the last bit
        # Costs: exact decimal sums of the per-item costs, equal to the gateway's own figures.
        costs = [Decimal(r["cost_usd"]) for r in rows]
        total = sum(costs, Decimal(0))
        assert Decimal(s["cost"]["total_usd"]) == total
        assert Decimal(s["cost"]["mean_usd"]) == (total / 11).quantize(Decimal("1e-12"))
        latencies = [r["latency_ms"] for r in rows]
        assert float(s["latency_ms"]["p50"]) == nearest_rank(latencies, 50)
        assert float(s["latency_ms"]["p95"]) == nearest_rank(latencies, 95)
        figures[name] = {"correct": correct, "total": total, "p50": nearest_rank(latencies, 50)}
    for r in by_system["trio"]:
        assert Decimal(r["cost_usd"]) == Decimal(r["fusion"]["cost_usd"])  # the header and the metadata agree
        by_role = r["fusion"]["cost_by_role"]
        assert Decimal(r["cost_usd"]) == Decimal(by_role["member"]) + Decimal(by_role["judge"])
        assert r["fusion"]["mode"] == "best-of" and len(r["fusion"]["members"]) == 3
    # The gateway's own breakdown of a pool's time, p50 by nearest rank over the per-item metadata.
    fanouts = [r["fusion"]["latency_ms"]["fanout"] for r in by_system["trio"]]
    judges = [r["fusion"]["latency_ms"]["judge"] for r in by_system["trio"]]
    stages = summary["systems"]["trio"]["gateway_latency_p50_ms"]
    assert (float(stages["fanout"]), float(stages["judge"])) == (nearest_rank(fanouts, 50), nearest_rank(judges, 50))
    assert f"trio: fan-out {nearest_rank(fanouts, 50):,.0f} ms, judge {nearest_rank(judges, 50):,.0f} ms" in (
        (out / "report.md").read_text()
    )
    for r in by_system["m-ft"]:
        assert r["cost_header"] == r["cost_usd"] and "fusion" not in r
        u = r["usage"]  # the baseline's cost is its usage at its price
        assert (
            Decimal(r["cost_usd"])
            == (u["prompt_tokens"] * Decimal("0.30") + u["completion_tokens"] * Decimal("1.20")) / 10**6
        )

    # Pairwise: counted from the judgements file.
    outcomes = Counter(j["outcome"] for j in judgements)
    for j in judgements:
        if j["votes"]:
            winners = {v["winner"] for v in j["votes"]}
            assert j["outcome"] == ("tie" if len(winners) == 2 else {"pool": "win", "baseline": "loss"}[winners.pop()])
            assert {v["first_shown"] for v in j["votes"]} == {"pool", "baseline"}  # both orders
        else:
            assert j["outcome"] == "tie" and j["reason"] == "identical answers"
    (cmp,) = summary["comparisons"]
    pw = cmp["pairwise"]
    assert (pw["wins"], pw["ties"], pw["losses"], pw["errors"]) == (
        outcomes["win"],
        outcomes["tie"],
        outcomes["loss"],
        0,
    )
    assert pw["identical_answers"] == sum(1 for j in judgements if not j["votes"])

    # Break-even by hand: V* = 25 / (mean pool cost - mean baseline cost), rounded up.
    mean_pool = (figures["trio"]["total"] / 11).quantize(Decimal("1e-12"))
    mean_ft = (figures["m-ft"]["total"] / 11).quantize(Decimal("1e-12"))
    v_star = Decimal(25) / (mean_pool - mean_ft)
    assert cmp["break_even"]["requests_per_month"] == math.ceil(v_star)
    assert Decimal(cmp["break_even"]["volume_per_month"]) == v_star.quantize(Decimal("0.01"))

    ratio = mean_pool / mean_ft
    delta = figures["trio"]["p50"] - figures["m-ft"]["p50"]
    pct = lambda k: f"{100 * k / 10:.0f}"  # noqa: E731
    lo, hi = wilson(figures["trio"]["correct"], 10)
    expected = (
        f"trio is right {pct(figures['trio']['correct'])}% of the time (95% CI {100 * lo:.0f}-{100 * hi:.0f}%) "
        f"vs {pct(figures['m-ft']['correct'])}% for m-ft, costs {ratio:.0f}x as much per request and "
        + (f"adds {delta:.0f} ms at p50." if delta >= 0 else f"is {-delta:.0f} ms faster at p50.")
    )
    assert cmp["headline"] == expected
    report = (out / "report.md").read_text()
    assert f"- **{expected}**" in report
    assert f"above {math.ceil(v_star):,} requests a month" in report
    assert expected in (out / "report.html").read_text()


def test_unknown_cost_is_reported_as_unknown_never_as_zero(gateway: GatewayRunner, tmp_path: Path) -> None:
    data = arithmetic(tmp_path / "data.jsonl", QUESTIONS[:3])
    out = tmp_path / "out"
    with gateway(SIM) as (_, srv):
        code = main(
            [
                "compare",
                "--dataset",
                str(data),
                "--pool",
                "unpriced",
                "--baseline",
                "m-ft",
                "--url",
                srv.url,
                "--scorer",
                "numeric",
                "--judge",
                "none",
                "--out",
                str(out),
                "--baseline-training-usd",
                "10",
            ]
        )
    assert code == 0
    results = read_jsonl(out / "results.jsonl")
    assert {r["cost_header"] for r in results if r["system"] == "unpriced"} == {"unknown"}
    summary = json.loads((out / "summary.json").read_text())
    s = summary["systems"]["unpriced"]
    assert {k: v for k, v in s["cost"].items() if k != "by_role_usd"} == {
        "known": 0,
        "unknown": 3,
        "total_usd": None,
        "mean_usd": None,
        "mean_ci95_usd": None,
    }
    judge_cost = sum(Decimal(r["fusion"]["cost_by_role"]["judge"]) for r in results if r["system"] == "unpriced")
    assert s["cost"]["by_role_usd"]["member"] is None
    assert Decimal(s["cost"]["by_role_usd"]["judge"]) == judge_cost  # the priced part stays known
    (cmp,) = summary["comparisons"]
    assert cmp["pairwise"] is None and cmp["break_even"]["known"] is False
    assert "its cost relative to the baseline is unknown" in cmp["headline"]


def test_unknown_names_and_an_unreachable_gateway_are_clear_errors(
    gateway: GatewayRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = arithmetic(tmp_path / "data.jsonl", QUESTIONS[:1])
    with gateway(SIM) as (_, srv):
        code = main(["compare", "--dataset", str(data), "--pool", "tiro", "--baseline", "m-ft", "--url", srv.url])
        assert code == 2
        assert (
            "compare: not at the gateway: tiro (it serves: m-a, m-b, m-c, m-judge, m-ft, m-free, trio, unpriced)"
            in (capsys.readouterr().err)
        )
        code = main(["compare", "--dataset", str(data), "--pool", "m-a", "--baseline", "m-ft", "--url", srv.url])
        assert code == 2
        assert (
            "compare: no --pool has a judge; name one with --judge MODEL (or --judge none)" in capsys.readouterr().err
        )
        assert received(srv.url) == Counter()  # nothing was asked
    port_in_use_by_nobody = srv.port  # the server is stopped now
    code = main(
        [
            "compare",
            "--dataset",
            str(data),
            "--pool",
            "trio",
            "--baseline",
            "m-ft",
            "--url",
            f"http://127.0.0.1:{port_in_use_by_nobody}",
        ]
    )
    assert code == 1
    assert f"compare: cannot reach the gateway at http://127.0.0.1:{port_in_use_by_nobody}: ConnectError" in (
        capsys.readouterr().err
    )


SLOW = SIM.replace("ttft_ms: 5,", "ttft_ms: 40,")


def test_an_interrupted_run_resumes_without_asking_again(gateway: GatewayRunner, tmp_path: Path) -> None:
    pairs = [(a, b) for a in range(11, 41) for b in (7,)]  # 30 items
    data = arithmetic(tmp_path / "data.jsonl", pairs)
    out = tmp_path / "out"
    args = [
        "compare",
        "--dataset",
        str(data),
        "--pool",
        "trio",
        "--baseline",
        "m-ft",
        "--scorer",
        "numeric",
        "--judge",
        "none",
        "--concurrency",
        "2",
        "--out",
        str(out),
    ]
    results = out / "results.jsonl"

    def lines() -> int:
        return len(results.read_text().splitlines()) if results.exists() else 0

    with gateway(SLOW) as (_, srv):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args, "--url", srv.url],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_until(lambda: lines() >= 12, timeout=30)
        finally:
            proc.send_signal(signal.SIGKILL)  # no chance to clean up: the worst kind of interruption
            proc.wait(timeout=10)
    done_before = Counter(r["system"] for r in read_jsonl(results))
    assert 12 <= sum(done_before.values()) < 60

    # A fresh gateway (same seed, same answers): everything it receives is from the resumed run.
    with gateway(SLOW) as (_, srv):
        assert main([*args, "--url", srv.url]) == 0
        asked = received(srv.url)
    assert asked == Counter({"trio": 30 - done_before["trio"], "m-ft": 30 - done_before["m-ft"]})
    final = read_jsonl(results)
    assert len(final) == 60 and len({r["key"] for r in final}) == 60  # nothing asked (or written) twice
    summary = json.loads((out / "summary.json").read_text())
    assert summary["systems"]["trio"]["answered"] == 30 and summary["systems"]["m-ft"]["answered"] == 30


def test_a_changed_line_is_asked_again_and_a_changed_reference_is_only_rescored(
    gateway: GatewayRunner, tmp_path: Path
) -> None:
    data = tmp_path / "data.jsonl"
    out = tmp_path / "out"
    args = [
        "compare",
        "--dataset",
        str(data),
        "--pool",
        "trio",
        "--baseline",
        "m-ft",
        "--scorer",
        "numeric",
        "--judge",
        "none",
        "--out",
        str(out),
    ]
    with gateway(SIM) as (_, srv):
        arithmetic(data, QUESTIONS[:4])
        assert main([*args, "--url", srv.url]) == 0
        before = received(srv.url)
        # Line 2 asks something else now; line 3 only has a (wrong) new reference.
        changed = [QUESTIONS[0], (12, 12), QUESTIONS[2], QUESTIONS[3]]
        arithmetic(data, changed)
        text = data.read_text().splitlines()
        a, b = QUESTIONS[2]
        text[2] = text[2].replace(f"The answer is {a * b}.", "The answer is 1.")
        data.write_text("\n".join(text) + "\n")
        assert main([*args, "--url", srv.url]) == 0
        after = received(srv.url)
    assert after - before == Counter({"trio": 1, "m-ft": 1})
    summary = json.loads((out / "summary.json").read_text())
    results = {(r["line"], r["system"]): r for r in read_jsonl(out / "results.jsonl")}
    for name in ("trio", "m-ft"):
        expected = sum(
            1
            for line, (x, y) in enumerate(changed, start=1)
            if line != 3 and results[(line, name)]["answer"].endswith(f"The answer is {x * y}.")
        )
        assert summary["systems"][name]["correct"] == expected  # line 3 can no longer be right


FAKE = """
providers:
  sim: {{type: simulator, seed: 3, profiles: {{quick: {{ttft_ms: 2, tokens_per_s: 5000, accuracy: 1.0}}}}}}
{fake}models:
  quick: {{provider: sim, price: {{input: 1, output: 2}}}}
  flaky: {{provider: up, model: flaky-upstream, price: {{input: 1, output: 2}}}}
  broken: {{provider: up, model: broken-upstream, price: {{input: 1, output: 2}}}}
  judge: {{provider: sim, model: quick}}
pools:
  duo: {{mode: best-of, members: [quick, quick], judge: {{model: judge}}}}
"""


def _fake_config(fake: FakeUpstream) -> str:
    block = "providers:\n" + fake_provider_yaml(fake.url, extra=", retry: {max_retries: 0}")  # type: ignore[attr-defined]
    return FAKE.format(fake=block.replace("providers:\n", ""))


def test_transient_errors_are_retried_and_final_errors_are_not(
    gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = json_reply(
        completion("The answer is 4.", usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    )
    fake.behaviours["flaky-upstream"] = sequence(error_reply(503), error_reply(500), ok)
    fake.behaviours["broken-upstream"] = error_reply(400, "this model rejects everything")
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps({"messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]})
        + "\n"
    )
    out = tmp_path / "out"
    with gateway(_fake_config(fake)) as (_, srv):
        base = [
            "compare",
            "--dataset",
            str(data),
            "--pool",
            "duo",
            "--url",
            srv.url,
            "--scorer",
            "numeric",
            "--judge",
            "none",
            "--concurrency",
            "1",
        ]
        assert main([*base, "--baseline", "flaky", "--out", str(out / "flaky")]) == 0
        assert main([*base, "--baseline", "broken", "--out", str(out / "broken")]) == 1
    err = capsys.readouterr().err
    assert len(fake.requests_for("flaky-upstream")) == 3  # two transient failures, then the answer
    assert len(fake.requests_for("broken-upstream")) == 1  # a 400 is final: never asked again
    (flaky,) = [r for r in read_jsonl(out / "flaky" / "results.jsonl") if r["system"] == "flaky"]
    assert (flaky["status"], flaky["attempts"], flaky["answer"], flaky["cost_usd"]) == (
        "ok",
        3,
        "The answer is 4.",
        "0.00002",
    )
    (broken,) = [r for r in read_jsonl(out / "broken" / "results.jsonl") if r["system"] == "broken"]
    assert (broken["status"], broken["attempts"], broken["error"]["status"]) == ("error", 1, 400)
    assert "this model rejects everything" in broken["error"]["message"]
    assert "compare: 1 request(s) failed after retries; run the same command again to retry them" in err
    summary = json.loads((out / "broken" / "summary.json").read_text())
    assert summary["systems"]["broken"]["failed"] == 1 and summary["systems"]["broken"]["correct"] == 0
    assert summary["systems"]["broken"]["scored"] == 1  # a failed request counts as a wrong answer


def test_a_gateway_that_goes_away_stops_the_run_early(
    gateway: GatewayRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = [(a, 9) for a in range(11, 51)]  # 40 items: 80 requests
    data = arithmetic(tmp_path / "data.jsonl", pairs)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    outcome: dict[str, int] = {}
    with gateway(SLOW) as (_, srv):
        args = [
            "compare",
            "--dataset",
            str(data),
            "--pool",
            "trio",
            "--baseline",
            "m-ft",
            "--judge",
            "none",
            "--concurrency",
            "2",
            "--retries",
            "1",
            "--url",
            srv.url,
            "--out",
            str(out),
        ]
        worker = threading.Thread(target=lambda: outcome.setdefault("code", main(args)))
        worker.start()
        assert wait_until(lambda: results.exists() and len(results.read_text().splitlines()) >= 6, timeout=30)
        srv.stop()  # the gateway goes away mid-run
        worker.join(timeout=30)
        assert not worker.is_alive()
    assert outcome["code"] == 1
    lines = read_jsonl(results)
    ok = [r for r in lines if r["status"] == "ok"]
    failed = [r for r in lines if r["status"] != "ok"]
    # It gave up after a few requests in a row could not connect, not after trying all 80.
    assert 6 <= len(ok) < 80 and 3 <= len(failed) <= 6
    assert {r["error"]["type"] for r in failed} == {"connection_error"}
    assert all(r["attempts"] == 2 for r in failed)
    err = capsys.readouterr().err
    assert f"compare: stopped early: the gateway at {srv.url} stopped answering (" in err
    assert "run the same command again to resume." in err


def test_a_resumed_run_counts_its_progress_right(
    gateway: GatewayRunner, fake: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both systems fail on the first run and answer on the second: the second run must count
    # 2 requests + 1 judgement, not forget the judgement because an old failed line is on disk.
    ok = json_reply(
        completion("The answer is 4.", usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
    )
    fake.behaviours["flaky-upstream"] = sequence(error_reply(400), ok)
    fake.behaviours["broken-upstream"] = sequence(error_reply(400), ok)
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "What is 2 + 2?"}]}) + "\n")
    with gateway(_fake_config(fake)) as (_, srv):
        args = [
            "compare",
            "--dataset",
            str(data),
            "--pool",
            "broken",
            "--baseline",
            "flaky",
            "--judge",
            "judge",
            "--concurrency",
            "1",
            "--url",
            srv.url,
            "--out",
            str(tmp_path / "out"),
        ]
        assert main(args) == 1
        first = capsys.readouterr().err.splitlines()
        assert main(args) == 0
        second = capsys.readouterr().err.splitlines()

    def last_progress(lines: list[str]) -> str:
        return [line for line in lines if line.startswith("compare: [")][-1]

    assert first[0] == "compare: 3 to do"
    assert last_progress(first).startswith("compare: [########################] 100% 2/2 · 2 failed · 0 retried · ")
    assert second[0] == "compare: 3 to do"
    assert last_progress(second).startswith("compare: [########################] 100% 3/3 · 0 failed · 0 retried · ")
    judgements = read_jsonl(tmp_path / "out" / "judgements.jsonl")
    assert [(j["outcome"], j["reason"]) for j in judgements] == [("tie", "identical answers")]


def test_key_tools_and_bounded_concurrency_as_seen_by_the_server(
    fake: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any OpenAI-compatible server will do as the other end: here a recording fake stands in for the gateway."""
    fake.behaviours[""] = json_reply({"object": "list", "data": [{"id": "pool-x"}, {"id": "ft-y"}]})  # GET /v1/models
    fake.behaviours["pool-x"] = json_reply(completion("The answer is 4."), delay=0.05)
    fake.behaviours["ft-y"] = json_reply(completion("The answer is 5."), delay=0.05)
    tools = [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}]
    lines = [
        {"messages": [{"role": "user", "content": f"What is {i} + 4?"}, {"role": "assistant", "content": "4"}]}
        for i in range(12)
    ]
    lines[0]["tools"] = tools
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    monkeypatch.setenv("FUSION_GATEWAY_API_KEY", "sk-compare-test")
    code = main(
        [
            "compare",
            "--dataset",
            str(data),
            "--pool",
            "pool-x",
            "--baseline",
            "ft-y",
            "--judge",
            "none",
            "--concurrency",
            "3",
            "--url",
            fake.url + "/v1",
            "--out",
            str(tmp_path / "out"),
        ]  # type: ignore[attr-defined]
    )
    assert code == 0
    chats = [s for s in fake.seen if s.model in ("pool-x", "ft-y")]
    assert len(chats) == 24
    assert {s.headers.get("authorization") for s in fake.seen} == {"Bearer sk-compare-test"}
    # Never more than --concurrency requests in flight, and it does use them.
    events = sorted([(s.started, 1) for s in chats] + [(s.finished or 0.0, -1) for s in chats])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == 3
    # The reference is not sent; a line's tools are.
    first = [s.body for s in chats if s.body["messages"][0]["content"] == "What is 0 + 4?"]
    assert [b["tools"] for b in first] == [tools, tools]
    assert all(
        b["messages"] == [{"role": "user", "content": b["messages"][0]["content"]}] for b in (s.body for s in chats)
    )
    assert all(b.get("stream") is None for b in (s.body for s in chats))
