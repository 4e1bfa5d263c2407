"""Raw ASGI helpers for the hot path: bounded body reads, JSON and error responses, disconnect watching."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from gateway import jsonutil
from gateway.errors import GatewayError, PayloadTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client closed the connection before the request body arrived."""


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (by Content-Length first, then as it streams)."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
    msg = await receive()
    if msg["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body"):
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
        return body
    parts = [body]
    size = len(body)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        part = msg.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
        parts.append(part)
        if not msg.get("more_body"):
            return b"".join(parts)


async def send_json(send: Send, status: int, obj: Any, headers: Headers = ()) -> None:  # type: ignore[assignment]
    data = jsonutil.dumps(obj)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def send_error(send: Send, exc: GatewayError, headers: Headers = ()) -> None:  # type: ignore[assignment]
    extra = [(k.encode(), v.encode()) for k, v in exc.headers().items()]
    await send_json(send, exc.http_status, exc.envelope(), [*headers, *extra])


async def cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away: every upstream call under it is cancelled and closed."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            scope.cancel()
            return
