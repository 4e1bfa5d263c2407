"""The merge pool's floor as seen from the gateway's own core: its slowest member, then its judge.

A bare client run where the gateway runs (uvloop, kept-alive connections, and the gateway's own HTTP
client, the cheapest there is here: a heavier one would raise the floor and flatter the gateway) calls the 200 ms
member endpoint and then the 50 ms judge endpoint of the mock, one request at a time, and prints the
p50 and p99 of each pair as JSON. No gateway can answer the pool faster than this client gets those two
answers from the same place; the difference is what the gateway adds.

    taskset -c 0 python tests/benchmarks/floor_client.py http://127.0.0.1:PORT SECONDS

With ``--pool C`` it is the pool's reference under load instead: C requests at a time, each making every
call the merge pool makes (its three members at once, then its judge), so the gateway's throughput at C
connections is compared with what the thinnest client on the same core gets from the same calls, in the
same run. It prints the throughput too.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from gateway.providers.http_client import UpstreamClient

BODY = json.dumps(
    {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "What is the capital of France?"}]}
).encode()


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, int(-(-len(ordered) * q // 100))) - 1]


async def fetch(client: UpstreamClient, url: str) -> None:
    resp = await client.post(url, BODY)
    while await resp.read_some():
        pass
    resp.close()


async def pool(base: str, seconds: float, concurrency: int) -> None:
    totals: list[float] = []
    client = UpstreamClient(0, 5.0, {"content-type": "application/json"})

    async def call(path: str) -> None:
        await fetch(client, f"{base}/{path}/v1/chat/completions")

    async def loop(end: float) -> None:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            await asyncio.gather(call("d0100"), call("d0150"), call("d0200"))
            await call("d0050")
            totals.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(loop(time.monotonic() + 1) for _ in range(concurrency)))  # warm the connections
    totals.clear()
    start = time.monotonic()
    await asyncio.gather(*(loop(start + seconds) for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    await client.aclose()
    print(json.dumps({"n": len(totals), "rps": len(totals) / elapsed, "p50_ms": nearest_rank(totals, 50),
                      "p99_ms": nearest_rank(totals, 99)}))


async def main(base: str, seconds: float) -> None:
    totals: list[float] = []
    client = UpstreamClient(0, 5.0, {"content-type": "application/json"})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        for path in ("d0200", "d0050"):
            await fetch(client, f"{base}/{path}/v1/chat/completions")
        totals.append((time.perf_counter() - t0) * 1000)
    await client.aclose()
    warm = totals[1:] or totals
    print(json.dumps({"n": len(warm), "p50_ms": nearest_rank(warm, 50), "p99_ms": nearest_rank(warm, 99)}))


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if len(sys.argv) == 5 and sys.argv[3] == "--pool":
        asyncio.run(pool(sys.argv[1], float(sys.argv[2]), int(sys.argv[4])))
    else:
        asyncio.run(main(sys.argv[1], float(sys.argv[2])))
