"""CPU per upstream call: the gateway's own HTTP client against aiohttp's ``ClientSession``, same run.

Each client makes N POSTs one after another to the C mock's instant endpoint on one kept-alive connection
and reads every answer whole; the process's CPU time is divided by N. The two alternate, so a busy moment
of the machine weighs on both. Pin it to one core, the mock takes the other:

    taskset -c 0 .venv/bin/python -m tests.benchmarks.upstream_client [--calls 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import uvloop

from gateway.providers.http_client import UpstreamClient
from tests.benchmarks.run import cpus, mock_upstream

BODY = b'{"model":"bench","messages":[{"role":"user","content":"What is the capital of France?"}]}'
HEADERS = {"content-type": "application/json"}


async def with_aiohttp(url: str, n: int) -> None:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        for _ in range(n):
            async with session.post(url, data=BODY) as resp:
                await resp.read()


async def with_own(url: str, n: int) -> None:
    client = UpstreamClient(0, 5.0, HEADERS)
    for _ in range(n):
        resp = await client.post(url, BODY)
        while await resp.read_some():
            pass
        resp.close()
    await client.aclose()


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    clients: dict[str, Callable[[str, int], Coroutine[Any, Any, None]]] = {"aiohttp": with_aiohttp, "gateway": with_own}
    per_call: dict[str, list[float]] = {name: [] for name in clients}
    with mock_upstream(cpus()[1]) as port:
        url = f"http://127.0.0.1:{port}/instant/v1/chat/completions"
        for _ in range(args.rounds):
            for name, run in clients.items():
                before = cpu_s()
                uvloop.run(run(url, args.calls))
                per_call[name].append((cpu_s() - before) / args.calls * 1e6)
    for name, rows in per_call.items():
        print(f"{name:8s} {statistics.median(rows):6.1f} us of CPU per call (rounds: "
              + ", ".join(f"{r:.1f}" for r in rows) + ")")
    ratio = statistics.median(per_call["gateway"]) / statistics.median(per_call["aiohttp"])
    print(f"the gateway's client costs {ratio:.2f}x what aiohttp's does per call")


if __name__ == "__main__":
    main()
