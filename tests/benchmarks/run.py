"""Gateway benchmarks against references measured in the same run.

    python tests/benchmarks/run.py [--rounds 3] [--duration 6] [--json results.json]

Needs nginx with the echo module, wrk and taskset (Debian: nginx libnginx-mod-http-echo wrk util-linux)
and the project installed in the running Python (uvloop, httptools, aiohttp). The mock upstream and wrk
run on the last CPU, the gateway and the reference proxy on CPU 0, so neither the mock nor the load
generator is what is measured. The machine may be shared and noisy: every throughput figure is
reported next to a reference measured in the same run, and the reference and the gateway alternate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PY = sys.executable


@dataclass
class Load:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    non200: int
    n: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpus() -> tuple[str, str]:
    n = os.cpu_count() or 1
    return ("0", str(n - 1)) if n > 1 else ("0", "0")


def wait_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


@contextmanager
def process(
    cmd: list[str], ready_url: str | None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if ready_url:
            wait_ready(ready_url)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def mock_upstream(cpu: str) -> Iterator[int]:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="fusion-bench-nginx-"))
    conf = tmp / "nginx.conf"
    conf.write_text((HERE / "mock-upstream.conf").read_text().replace("@TMP@", str(tmp)).replace("@PORT@", str(port)))
    subprocess.run(["taskset", "-c", cpu, "nginx", "-c", str(conf)], check=True)
    try:
        wait_ready_post(f"http://127.0.0.1:{port}/instant/v1/chat/completions")
        yield port
    finally:
        subprocess.run(["nginx", "-c", str(conf), "-s", "stop"], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def wait_ready_post(url: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}"), timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wrk(url: str, model: str, conns: int, seconds: int, cpu: str) -> Load:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            cpu,
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "load.lua"),
            url,
        ],
        env={**os.environ, "MODEL": model},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(
        r"RESULT rps=([\d.]+) p50_ms=([\d.]+) p90_ms=([\d.]+) p99_ms=([\d.]+) errors=(\d+) "
        r"non200=(\d+) n=(\d+)",
        out,
    )
    if m is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    g = m.groups()
    return Load(float(g[0]), float(g[1]), float(g[2]), float(g[3]), int(g[4]), int(g[5]), int(g[6]))


def sequential(url: str, model: str, n: int) -> int:
    """``n`` requests one after another on one kept-alive connection."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    for _ in range(n):
        conn.request("POST", parts.path, body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"status {resp.status}")
    conn.close()
    return n


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def gateway_config(mock: int, cache: bool = False, *, tracing: bool = False, ledger: bool = False) -> str:
    """The benchmark's gateway. The request path is measured with the ledger off (``ledger: none``) and,
    separately, with the default SQLite ledger on (``ledger=True``): its cost is a figure of its own."""
    base = f"http://127.0.0.1:{mock}"
    # every request traced and every span exported (to the mock's OTLP sink): the most tracing can cost
    traced = f"tracing: {{otlp_endpoint: '{base}', sample_ratio: 1.0}}\n" if tracing else ""
    remembered = "" if ledger else "ledger: none\n"
    return traced + remembered + f"""
cache: {{enabled: {str(cache).lower()}}}
server: {{host: 127.0.0.1, keepalive_s: 2.5}}
providers:
  instant: {{type: openai, base_url: '{base}/instant/v1'}}
  d050: {{type: openai, base_url: '{base}/d0050/v1'}}
  d100: {{type: openai, base_url: '{base}/d0100/v1'}}
  d150: {{type: openai, base_url: '{base}/d0150/v1'}}
  d200: {{type: openai, base_url: '{base}/d0200/v1'}}
  hang: {{type: openai, base_url: '{base}/hang/v1'}}
models:
  instant: {{provider: instant, price: {{input: 0.15, output: 0.60}}}}
  slow200: {{provider: d200, price: {{input: 0.15, output: 0.60}}}}
  m100: {{provider: d100, price: {{input: 0.15, output: 0.60}}}}
  m150: {{provider: d150, price: {{input: 0.15, output: 0.60}}}}
  m200: {{provider: d200, price: {{input: 0.15, output: 0.60}}}}
  judge50: {{provider: d050, price: {{input: 2.50, output: 10.00}}}}
  hung: {{provider: hang, price: {{input: 0.15, output: 0.60}}}}
pools:
  merge: {{mode: merge, members: [m100, m150, m200], judge: {{model: judge50}}}}
  straggler: {{mode: merge, members: [m100, m150, hung], judge: {{model: judge50}}, timeout_s: 1, quorum: 2,
              grace_ms: 100}}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of reference and gateway")
    ap.add_argument("--duration", type=int, default=6, help="seconds per load run")
    ap.add_argument("--memory-requests", type=int, default=100_000)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--pool-c1-seconds", type=int, default=30, help="seconds per one-at-a-time pool run")
    ap.add_argument(
        "--only",
        choices=["all", "c1", "load", "ledger"],
        default="all",
        help="c1: only the one-request-at-a-time latency scenarios; load: only the throughput ones; "
        "ledger: only the ledger's",
    )
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"missing '{tool}': apt-get install nginx libnginx-mod-http-echo wrk util-linux", file=sys.stderr)
            return 2
    app_cpu, load_cpu = cpus()
    results: dict[str, object] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with mock_upstream(load_cpu) as mock, tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(gateway_config(mock))
        ref_port, gw_port = free_port(), free_port()
        ref_cmd = [
            "taskset",
            "-c",
            app_cpu,
            PY,
            "-m",
            "uvicorn",
            "tests.benchmarks.reference_proxy:app",
            "--port",
            str(ref_port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        gw_cmd = [
            "taskset",
            "-c",
            app_cpu,
            PY,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(gw_port),
        ]
        ref_env = {"UPSTREAM": f"http://127.0.0.1:{mock}/instant"}
        ref_chat = f"http://127.0.0.1:{ref_port}/v1/chat/completions"
        gw_chat = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        with process(ref_cmd, None, ref_env) as _ref, process(gw_cmd, f"http://127.0.0.1:{gw_port}/readyz") as gw:
            wait_ready_post(ref_chat)
            if args.only in ("all", "ledger"):
                ledger_cfg = Path(tmp) / "bench-ledger.yaml"
                ledger_cfg.write_text(gateway_config(mock, ledger=True))
                ledger_port = free_port()
                ledger_cmd = [*gw_cmd[: gw_cmd.index("--config")], "--config", str(ledger_cfg),
                              "--port", str(ledger_port)]
                ledger_chat = f"http://127.0.0.1:{ledger_port}/v1/chat/completions"
                with process(ledger_cmd, f"http://127.0.0.1:{ledger_port}/readyz", {"FUSION_GATEWAY_DATA": tmp}):
                    # the same gateway with the ledger off is the reference here, alternated with it
                    results["ledger_passthrough_instant_c64"] = alternate(
                        gw_chat, ledger_chat, "instant", 64, args, load_cpu
                    )
                    results["ledger_passthrough_c1"] = ledger_c1(gw_chat, ledger_chat, args, load_cpu)
                results["ledger_writer"] = ledger_writer(app_cpu)
            if args.only == "ledger":
                report(results)
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
                return 0
            if args.only in ("all", "c1"):
                results["one_at_a_time"] = one_at_a_time(f"http://127.0.0.1:{mock}", gw_chat, args, app_cpu, load_cpu)
            if args.only == "c1":
                report(results)
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
                return 0
            results["memory"] = memory(gw.pid, gw_chat, load_cpu, args.memory_requests)
            results["passthrough_instant_c64"] = alternate(ref_chat, gw_chat, "instant", 64, args, load_cpu)
            ref_env200 = {"UPSTREAM": f"http://127.0.0.1:{mock}/d0200"}
            results["passthrough_200ms_c256"] = {
                "gateway": vars(wrk(gw_chat, "slow200", 256, args.duration, load_cpu)),
            }
            results["merge_pool_c64_floor"] = floor_pool(f"http://127.0.0.1:{mock}", 64, args.duration, app_cpu)
            results["merge_pool_c64"] = vars(wrk(gw_chat, "merge", 64, args.duration, load_cpu))
            results["straggler_pool_c64"] = vars(wrk(gw_chat, "straggler", 64, args.duration, load_cpu))
            traced_cfg = Path(tmp) / "bench-traced.yaml"
            traced_cfg.write_text(gateway_config(mock, tracing=True))
            traced_port = free_port()
            traced_cmd = [*gw_cmd[: gw_cmd.index("--config")], "--config", str(traced_cfg), "--port", str(traced_port)]
            traced_chat = f"http://127.0.0.1:{traced_port}/v1/chat/completions"
            # the untraced gateway stays up but idle: it takes no CPU from the traced one
            with process(traced_cmd, f"http://127.0.0.1:{traced_port}/readyz"):
                results["tracing_passthrough_instant_c64"] = alternate(
                    ref_chat, traced_chat, "instant", 64, args, load_cpu
                )
                results["tracing_merge_pool_c64"] = vars(wrk(traced_chat, "merge", 64, args.duration, load_cpu))
            results["cache_hit_c64"] = cache_hits(Path(tmp), mock, gw_cmd, gw_chat, args, load_cpu)
        ref_cmd[ref_cmd.index(str(ref_port))] = str(ref_port2 := free_port())
        with process(ref_cmd, None, ref_env200):
            ref200 = f"http://127.0.0.1:{ref_port2}/v1/chat/completions"
            wait_ready_post(ref200)
            results["passthrough_200ms_c256"]["reference"] = vars(  # type: ignore[index]
                wrk(ref200, "slow200", 256, args.duration, load_cpu)
            )
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cache_hits(
    tmp: Path, mock: int, gw_cmd: list[str], passthrough: str, args: argparse.Namespace, cpu: str
) -> dict[str, object]:
    """The same request over and over to a gateway with the response cache on: after the first, every
    one is a hit (the mock is never called again). Alternated with passthrough to the instant mock through
    the benchmark's gateway (``passthrough``, idle meanwhile), so that the ratio is of one moment."""
    cfg = tmp / "bench-cache.yaml"
    cfg.write_text(gateway_config(mock, cache=True))
    cmd = [*gw_cmd]
    cmd[cmd.index("--config") + 1] = str(cfg)
    cmd[cmd.index("--port") + 1] = str(port := free_port())
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    with process(cmd, f"http://127.0.0.1:{port}/readyz"):
        sequential(url, "instant", 10)  # the first is the miss that fills the entry
        result = alternate(passthrough, url, "instant", 64, args, cpu)
    result["median_rps"] = statistics.median(r["gateway"]["rps"] for r in result["rounds"])  # type: ignore[attr-defined]
    return result


def alternate(ref: str, gw: str, model: str, conns: int, args: argparse.Namespace, cpu: str) -> dict[str, object]:
    wrk(ref, model, conns, 2, cpu)  # warm both
    wrk(gw, model, conns, 2, cpu)
    rounds = []
    for _ in range(args.rounds):
        r = wrk(ref, model, conns, args.duration, cpu)
        g = wrk(gw, model, conns, args.duration, cpu)
        rounds.append({"reference": vars(r), "gateway": vars(g), "ratio": g.rps / r.rps})
    return {"rounds": rounds, "median_ratio": statistics.median(x["ratio"] for x in rounds)}  # type: ignore[misc]


def floor_pool(mock: str, conns: int, seconds: int, cpu: str) -> dict[str, float]:
    """The merge pool's calls made by a bare client (the gateway's own HTTP client) on the gateway's core,
    ``conns`` at a time: the same-run reference for the pool under load (``floor_client.py --pool``)."""
    out = subprocess.run(
        ["taskset", "-c", cpu, PY, str(HERE / "floor_client.py"), mock, str(seconds), "--pool", str(conns)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def ledger_c1(off: str, on: str, args: argparse.Namespace, cpu: str) -> dict[str, object]:
    """One request at a time, passthrough to the instant mock: the ledger off and on, alternated in short
    runs (the machine's speed drifts over seconds; a difference of a tenth of a millisecond needs pairs
    taken moments apart), three pairs per round."""
    rounds = []
    for _ in range(args.rounds * 3):
        a = wrk(off, "instant", 1, 2, cpu)
        b = wrk(on, "instant", 1, 2, cpu)
        rounds.append({"off_p50": a.p50_ms, "on_p50": b.p50_ms, "added_p50": b.p50_ms - a.p50_ms})
    return {"rounds": rounds, "median_added_p50": statistics.median(r["added_p50"] for r in rounds)}


def ledger_writer(cpu: str) -> dict[str, object]:
    """Records per second the ledger's writer sustains (``ledger_write.py``, on the gateway's core): into
    an SQLite file, and into a throwaway PostgreSQL cluster when PostgreSQL is installed."""
    out: dict[str, object] = {}
    backends = {"sqlite": []} | ({"postgresql": ["--postgres"]} if postgres_installed() else {})
    for name, extra in backends.items():
        cmd = ["taskset", "-c", cpu, PY, str(HERE / "ledger_write.py"), "--records", "50000", "--json", *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def postgres_installed() -> bool:
    return shutil.which("pg_ctl") is not None or bool(list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")))


def one_at_a_time(mock: str, gw: str, args: argparse.Namespace, app_cpu: str, cpu: str) -> dict[str, object]:
    """What the gateway adds to one request at a time, against the mock called directly in the same run.

    Passthrough: the instant mock through the gateway vs the instant mock itself (wrk on the load core).
    Merge pool (members at 100/150/200 ms, then a 50 ms judge) against its floor: the 200 ms member and
    the 50 ms judge endpoints called one after the other by a bare client (the gateway's own HTTP client)
    on the gateway's own core (``floor_client.py``), so that the mock's timer overshoot and the cost of
    reaching the mock from that core count as floor, not as gateway. Direct and gateway runs alternate; the figures are
    medians over the rounds.
    """

    def direct(path: str, seconds: int) -> Load:
        return wrk(f"{mock}/{path}/v1/chat/completions", "bench", 1, seconds, cpu)

    def floor(seconds: int) -> dict[str, float]:
        out = subprocess.run(
            ["taskset", "-c", app_cpu, PY, str(HERE / "floor_client.py"), mock, str(seconds)],
            capture_output=True, text=True, check=True,
        ).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    wrk(gw, "instant", 1, 2, cpu)  # warm
    wrk(gw, "merge", 1, 2, cpu)
    pt: list[dict[str, float]] = []
    pool: list[dict[str, float]] = []
    for _ in range(args.rounds):
        d = direct("instant", args.duration)
        g = wrk(gw, "instant", 1, args.duration, cpu)
        pt.append({"direct_p50": d.p50_ms, "direct_p99": d.p99_ms, "gateway_p50": g.p50_ms, "gateway_p99": g.p99_ms,
                   "added_p50": g.p50_ms - d.p50_ms, "added_p99": g.p99_ms - d.p99_ms})
        f = floor(args.pool_c1_seconds // 2)
        m = wrk(gw, "merge", 1, args.pool_c1_seconds, cpu)
        pool.append({"floor_p50": f["p50_ms"], "floor_p99": f["p99_ms"], "gateway_p50": m.p50_ms,
                     "gateway_p99": m.p99_ms, "over_p50": m.p50_ms - f["p50_ms"], "over_p99": m.p99_ms - f["p99_ms"],
                     "n": m.n})

    def med(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in rows) for k in rows[0]}

    return {"passthrough": {"rounds": pt, "median": med(pt)}, "merge_pool": {"rounds": pool, "median": med(pool)}}


def memory(pid: int, gw: str, cpu: str, total: int) -> dict[str, float]:
    served = sequential(gw, "instant", 1000)
    first = rss_mb(pid)
    first_at = served
    while served < total:
        served += wrk(gw, "instant", 64, 5, cpu).n
    return {
        "rss_mb_after_first": first,
        "requests_first": first_at,
        "rss_mb_after_all": rss_mb(pid),
        "requests_all": served,
        "growth_mb": rss_mb(pid) - first,
    }


def report_ledger(r: dict[str, object]) -> None:
    lg = r.get("ledger_passthrough_instant_c64")
    if lg is None:
        return
    assert isinstance(lg, dict)
    l1 = r["ledger_passthrough_c1"]
    lw = r["ledger_writer"]
    assert isinstance(l1, dict) and isinstance(lw, dict)
    print("the default SQLite ledger on, against the same gateway with it off, alternated")
    print(f"  passthrough, instant upstream, 64 connections: {lg['median_ratio']:.0%} of the throughput off"
          "   (target >= 90%)")
    print(f"  one request at a time: adds p50 {l1['median_added_p50']:+.3f} ms   (target <= 0.1 ms)")
    for name, w in lw.items():
        target = {"sqlite": "5,000", "postgresql": "10,000"}[name]
        print(f"  writer into {name}: {w['records_per_s']:,.0f} records/s, {w['cpu_us_per_record']:.1f} us CPU per"
              f" record   (target >= {target} records/s)")


def report(r: dict[str, object]) -> None:
    report_ledger(r)
    c1 = r.get("one_at_a_time")
    if isinstance(c1, dict):
        pt, pool = c1["passthrough"]["median"], c1["merge_pool"]["median"]
        print("\none request at a time (medians over the rounds; the mock called directly in the same run)")
        print(
            f"  passthrough, instant upstream: adds p50 {pt['added_p50']:.3f} ms, p99 {pt['added_p99']:.3f} ms"
            f" (direct p50 {pt['direct_p50']:.3f} ms)   (targets p50 <= 0.4 ms, p99 <= 1 ms)"
        )
        print(
            f"  merge pool 100/150/200 ms + judge 50 ms: p50 {pool['gateway_p50']:.1f} ms, {pool['over_p50']:+.2f} ms"
            f" over its floor {pool['floor_p50']:.1f}; p99 {pool['gateway_p99']:.1f} ms, {pool['over_p99']:+.2f} ms"
            f" over {pool['floor_p99']:.1f}   (targets p50 <= +2 ms, p99 <= +6 ms)"
        )
    if "passthrough_instant_c64" not in r:
        return
    p = r["passthrough_instant_c64"]
    assert isinstance(p, dict)
    print("\npassthrough, instant upstream, 64 connections (reference = thinnest raw-ASGI + aiohttp proxy)")
    for i, rd in enumerate(p["rounds"], 1):
        print(
            f"  round {i}: reference {rd['reference']['rps']:8,.0f} rps | gateway {rd['gateway']['rps']:8,.0f} rps"
            f" | ratio {rd['ratio']:.2f}"
        )
    print(f"  median ratio {p['median_ratio']:.2f}   (target >= 0.57)")
    s = r["passthrough_200ms_c256"]
    assert isinstance(s, dict)
    g, ref = s["gateway"], s["reference"]
    print("passthrough, 200 ms upstream, 256 connections (ideal 1,280 rps)")
    print(f"  gateway {g['rps']:,.0f} rps, p50 {g['p50_ms']:.1f} ms   (targets >= 1,150 rps, p50 <= 215 ms)")
    print(f"  reference {ref['rps']:,.0f} rps, p50 {ref['p50_ms']:.1f} ms")
    m = r["merge_pool_c64"]
    assert isinstance(m, dict)
    print("merge pool, members 100/150/200 ms + judge 50 ms (floor 250 ms), 64 connections (ideal 256 rps)")
    print(
        f"  {m['rps']:,.0f} rps ({m['rps'] / 256:.0%} of ideal), p50 {m['p50_ms']:.1f} ms, p90 {m['p90_ms']:.1f} ms"
        "   (targets >= 90%, p50 <= 260 ms)"
    )
    mf = r["merge_pool_c64_floor"]
    assert isinstance(mf, dict)
    print(
        f"  a bare client making the same calls on the gateway's core: {mf['rps']:,.0f} rps, p50 {mf['p50_ms']:.1f} ms"
        f" (the gateway: {m['rps'] / mf['rps']:.0%} of it)"
    )
    h = r["straggler_pool_c64"]
    assert isinstance(h, dict)
    print("one member hung (timeout_s 1, quorum 2, grace 100 ms), 64 connections")
    print(f"  p50 {h['p50_ms']:.1f} ms, {h['rps']:,.0f} rps, non-200 {h['non200']}   (target p50 <= 450 ms)")
    c = r["cache_hit_c64"]
    assert isinstance(c, dict)
    passthrough = statistics.median(rd["reference"]["rps"] for rd in c["rounds"])
    rounds = ", ".join(f"{x['ratio']:.2f}" for x in c["rounds"])
    print("cache hits, the same request, 64 connections (alternated with passthrough to the instant mock)")
    print(
        f"  {c['median_rps']:,.0f} rps, median ratio {c['median_ratio']:.2f}x passthrough"
        f" ({passthrough:,.0f} rps; rounds {rounds})   (target >= 2.00x)"
    )
    t = r["tracing_passthrough_instant_c64"]
    tm = r["tracing_merge_pool_c64"]
    assert isinstance(t, dict) and isinstance(tm, dict)
    print("tracing on, every request sampled and exported over OTLP/HTTP (off: the figures above)")
    print(f"  passthrough, instant upstream, 64 connections: median ratio {t['median_ratio']:.2f}"
          f" (off: {p['median_ratio']:.2f})")
    print(f"  merge pool, 64 connections: {tm['rps']:,.0f} rps, p50 {tm['p50_ms']:.1f} ms"
          f" (off: {m['rps']:,.0f} rps, p50 {m['p50_ms']:.1f} ms)")
    mem = r["memory"]
    assert isinstance(mem, dict)
    print(
        f"memory: RSS {mem['rss_mb_after_first']:.1f} MB after {mem['requests_first']:,} requests, "
        f"{mem['rss_mb_after_all']:.1f} MB after {mem['requests_all']:,}: {mem['growth_mb']:+.1f} MB"
        "   (target <= 20 MB)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
