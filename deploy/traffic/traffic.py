"""Demo traffic for the compose stack: a steady stream of chat completions to the gateway's pools and
models, so that the Grafana dashboard has something to show.

Runs in the gateway image (Python and httpx are there). Requests go round-robin over the names, most
of them arithmetic questions (the simulator's models answer those right or wrong, which is what the
judge and the baseline comparison are about), a share of them streamed.

    python traffic.py --url http://gateway:8000 --rate 2             # forever
    python traffic.py --url http://127.0.0.1:8000 --count 30         # 30 requests, then a JSON summary

The client key comes from --key or FUSION_CLIENT_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence

import httpx

QUESTIONS = [
    "What is {a} * {b}?",
    "What is {a} + {b}?",
    "What is {a} - {b}?",
]
PROSE = [
    "Explain in two sentences why a judge model might prefer one answer over another.",
    "Summarise the trade-off between latency and cost when asking several models at once.",
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://gateway:8000"), help="gateway base URL")
    p.add_argument("--key", default=os.environ.get("FUSION_CLIENT_KEY", "demo-key"), help="client API key")
    p.add_argument("--models", default="", help="comma-separated names (default: everything /v1/models lists)")
    p.add_argument("--rate", type=float, default=2.0, help="requests started per second")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight at most")
    p.add_argument("--count", type=int, default=0, help="stop after this many requests (0: run until stopped)")
    p.add_argument("--stream-share", type=float, default=0.2, help="share of requests sent with stream: true")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for /readyz")
    p.add_argument("--report-every", type=float, default=30.0, help="seconds between progress lines (stderr)")
    return p.parse_args(argv)


def question(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice(PROSE)
    return rng.choice(QUESTIONS).format(a=rng.randint(2, 99), b=rng.randint(2, 99))


async def wait_ready(client: httpx.AsyncClient, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"traffic: {client.base_url} not ready after {seconds:.0f}s")
        await asyncio.sleep(0.5)


async def one(client: httpx.AsyncClient, model: str, prompt: str, stream: bool, results: Counter[str]) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    try:
        if stream:
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                async for _ in resp.aiter_lines():
                    pass
                results[str(resp.status_code)] += 1
        else:
            resp = await client.post("/v1/chat/completions", json=body)
            results[str(resp.status_code)] += 1
    except httpx.HTTPError as exc:
        results[type(exc).__name__] += 1


async def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    headers = {"authorization": f"Bearer {args.key}"}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=120, limits=limits) as client:
        await wait_ready(client, args.ready_timeout)
        if args.models:
            models = [m.strip() for m in args.models.split(",") if m.strip()]
        else:
            listed = (await client.get("/v1/models")).raise_for_status().json()
            models = [m["id"] for m in listed["data"]]
        if not models:
            raise SystemExit("traffic: no models to call")
        results: Counter[str] = Counter()
        slots = asyncio.Semaphore(args.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        last_report = started
        sent = 0
        # In a container this is PID 1, which the kernel shields from signals without a handler:
        # without these, `docker compose stop` would wait for its timeout and kill.
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)

        async def guarded(model: str, prompt: str, stream: bool) -> None:
            try:
                await one(client, model, prompt, stream, results)
            finally:
                slots.release()

        while (not args.count or sent < args.count) and not stopping.is_set():
            await slots.acquire()
            model = models[sent % len(models)]
            task = asyncio.create_task(guarded(model, question(rng), rng.random() < args.stream_share))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            now = time.monotonic()
            if now - last_report >= args.report_every:
                print(f"traffic: {sent} sent, {dict(results)}", file=sys.stderr, flush=True)
                last_report = now
            if args.rate > 0:
                # Poisson arrivals at the requested mean rate
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), rng.expovariate(args.rate))
        if stopping.is_set():
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"sent": sent, "models": models, "status": dict(results), "seconds": time.monotonic() - started}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    summary = asyncio.run(run(args))
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
