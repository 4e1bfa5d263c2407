"""The thinnest Python proxy: raw ASGI, one aiohttp call per request, the body forwarded untouched.

It is the ceiling any Python gateway on a given machine can reach, so the benchmark reports the
gateway as a ratio of it, measured in the same run. UPSTREAM is the mock's base URL.
Run: uvicorn tests.benchmarks.reference_proxy:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:18080/instant")


class Proxy:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with self.session.post(
            UPSTREAM + scope["path"], data=body, headers={"content-type": "application/json"}
        ) as resp:
            data = await resp.read()
            status = resp.status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})


app = Proxy()
