"""What every HTTP provider shares: the aiohttp session, error translation, upstream error bodies.

aiohttp, not httpx: at 256 requests in flight httpx's pool delivered 41 rps where aiohttp delivered
1,193 (of 1,280 possible) on the same machine; a fusion request makes N+1 upstream calls, so the
upstream client sets the gateway's ceiling.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from typing import Any

import aiohttp

from gateway.config.schema import Timeouts
from gateway.wire import jsonutil
from gateway.wire.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)

_KEYLIKE = re.compile(r"(sk|pk|rk|key|AIza)[-_A-Za-z0-9]{12,}")
_MAX_MESSAGE = 300


#: Headers for the upstream call running in this task, beside the provider's own: the W3C trace context
#: when tracing is on (set by the caller around one call; None, the default, costs nothing).
call_headers: ContextVar[Mapping[str, str] | None] = ContextVar("fusion_call_headers", default=None)


def new_session(max_connections: int, timeouts: Timeouts, headers: dict[str, str]) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=max_connections,  # 0: unlimited
        limit_per_host=0,
        ttl_dns_cache=60,
        keepalive_timeout=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Only the socket connect timeout lives here (it costs nothing on a pooled connection); first byte
        # and wall clock are enforced per call, and there is deliberately no per-read timeout: a
        # drip-feeding upstream is cut by the wall clock instead.
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=timeouts.connect_s),
        headers=headers,
        json_serialize=lambda o: jsonutil.dumps(o).decode(),
        auto_decompress=True,
        trust_env=False,
    )


class upstream_errors:  # lower case: used like a function, ``with upstream_errors(model):``
    """Translate transport errors into the gateway's tree (see :mod:`gateway.wire.errors`).

    A class rather than ``@contextmanager``: it wraps every upstream call, and a generator-based
    context manager costs several times more per use."""

    __slots__ = ("model",)

    def __init__(self, model: str) -> None:
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or isinstance(exc, UpstreamError) or not isinstance(exc, Exception):
            return
        model = self.model
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout(f"upstream '{model}' timed out") from exc
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise UpstreamConnectError(f"upstream '{model}' is unreachable") from exc
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError):
            raise UpstreamProtocolError(f"upstream '{model}' closed the connection mid-answer") from exc
        if isinstance(exc, aiohttp.ClientError):
            raise UpstreamProtocolError(f"upstream '{model}' failed: {type(exc).__name__}") from exc


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def status_error(
    model: str, status: int, body: bytes, headers: Any, secrets: tuple[str, ...] = ()
) -> UpstreamStatusError:
    """The error for an upstream error status. The upstream's own message is kept only when the caller's
    request was at fault (400-class), cut short and scrubbed of anything key-shaped; otherwise the
    body is dropped entirely."""
    retry_after = retry_after_seconds(headers.get("retry-after")) if headers is not None else None
    if status in (400, 413, 422):
        detail = _upstream_message(body, secrets)
        msg = f"upstream '{model}' rejected the request ({status})" + (f": {detail}" if detail else "")
    elif status in (401, 403):
        msg = (
            f"upstream '{model}' refused the gateway's credentials ({status}); "
            "the operator must fix the provider's api_key"
        )
    else:
        msg = f"upstream '{model}' answered {status}"
    return UpstreamStatusError(msg, upstream_status=status, retry_after_s=retry_after)


def _upstream_message(body: bytes, secrets: tuple[str, ...]) -> str:
    try:
        data = jsonutil.loads(body)
    except jsonutil.JSONDecodeError:
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
    if not isinstance(msg, str):
        return ""
    for s in secrets:
        if s:
            msg = msg.replace(s, "***")
    msg = _KEYLIKE.sub("***", msg)
    return msg if len(msg) <= _MAX_MESSAGE else msg[: _MAX_MESSAGE - 1] + "…"


async def iter_body(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The response body as it arrives. The caller bounds it with its wall clock."""
    content = resp.content
    while True:
        data = await content.readany()
        if not data:
            return
        yield data
