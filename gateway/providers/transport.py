"""What every HTTP provider shares: the client, error translation, upstream error bodies.

The client is the gateway's own (:mod:`gateway.providers.http_client`): a fusion request makes N+1
upstream calls, so the upstream client's cost per call sets both the gateway's ceiling and most of
what it adds to a request's latency.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from typing import Any

from gateway.providers.http_client import (
    BadResponse,
    ClientError,
    ConnectFailed,
    Disconnected,
    Response,
)
from gateway.wire import jsonutil
from gateway.wire.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamTooLarge,
)
from gateway.wire.sse import EventTooLarge

_KEYLIKE = re.compile(r"(sk|pk|rk|key|AIza)[-_A-Za-z0-9]{12,}")
_MAX_MESSAGE = 300
_NOT_ALNUM = re.compile(r"[^0-9a-z]")
_BASE64ISH = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
_WITHHELD = "(the upstream's message was withheld: it quoted a credential)"


#: Headers for the upstream call running in this task, beside the provider's own: the W3C trace context
#: when tracing is on (set by the caller around one call; None, the default, costs nothing).
call_headers: ContextVar[Mapping[str, str] | None] = ContextVar("fusion_call_headers", default=None)


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
        if isinstance(exc, EventTooLarge):
            raise UpstreamTooLarge(f"upstream '{model}' sent an event too large to accept: {exc}") from None
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout(f"upstream '{model}' timed out") from exc
        if isinstance(exc, ConnectFailed):
            raise UpstreamConnectError(f"upstream '{model}' is unreachable") from exc
        if isinstance(exc, Disconnected):
            raise UpstreamProtocolError(f"upstream '{model}' closed the connection mid-answer") from exc
        if isinstance(exc, BadResponse):
            raise UpstreamProtocolError(f"upstream '{model}' failed: {exc}") from exc
        if isinstance(exc, ClientError):
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
            msg = re.sub(re.escape(s), "***", msg, flags=re.IGNORECASE)
    if any(carries_secret(msg, s) for s in secrets if s):
        return _WITHHELD  # an encoded copy is left: patching it could miss another
    msg = _KEYLIKE.sub("***", msg)
    return msg if len(msg) <= _MAX_MESSAGE else msg[: _MAX_MESSAGE - 1] + "…"


def carries_secret(text: str, secret: str) -> bool:
    """Does ``text`` hold ``secret`` in any form an upstream might echo it: as is, percent-encoded (once
    or more), in another case, spaced out or split by punctuation, or inside base64 (standard or URL
    alphabet, as in a Basic header)? Such a message is withheld whole rather than patched, since a
    patched one can still leak what the patch missed (plain copies are starred out before this is asked).

    Every view of ``text`` is compared with letters and digits only, lower-cased: separators and case
    cannot hide the key."""
    needle = _NOT_ALNUM.sub("", secret.lower())
    if len(needle) < 8:
        return False  # too short to tell from ordinary text; config refuses such keys elsewhere anyway
    views = [text]
    for _ in range(4):  # percent-encoded, and encoded again, as nested URLs do
        decoded = urllib.parse.unquote(views[-1])
        if decoded == views[-1]:
            break
        views.append(decoded)
    for token in _BASE64ISH.findall(views[-1]):
        views.extend(_base64_views(token))
    return any(needle in _NOT_ALNUM.sub("", view.lower()) for view in views)


def _base64_views(token: str) -> list[str]:
    out = []
    for candidate in (token, token[1:], token[2:], token[3:]):  # a key quoted mid-token starts off alignment
        body = candidate.rstrip("=")
        padded = body + "=" * (-len(body) % 4)
        for alt in (b"+/", b"-_"):
            try:
                out.append(base64.b64decode(padded, altchars=alt, validate=False).decode("latin-1"))
            except (binascii.Error, ValueError):
                continue
    return out


def _too_large(model: str, limit: int) -> UpstreamTooLarge:
    return UpstreamTooLarge(f"upstream '{model}' sent an answer larger than its limit of {limit} bytes")


async def iter_body(resp: Response, model: str, limit: int) -> AsyncIterator[bytes]:
    """The response body as it arrives (decompressed), at most ``limit`` bytes in all. The caller bounds
    it in time with its wall clock."""
    size = 0
    while True:
        data = await resp.read_some()
        if not data:
            return
        size += len(data)
        if size > limit:
            raise _too_large(model, limit)
        yield data


async def read_body(resp: Response, model: str, limit: int) -> bytes:
    """The whole response body (decompressed), refused past ``limit`` bytes before it is all in memory.

    The pieces go into one ``bytearray``: past a few hundred kilobytes it lives in its own memory
    mapping, which goes back to the system as soon as it is dropped, where a list of small pieces
    would leave the heap fragmented."""
    declared = resp.content_length
    if declared is not None and not resp.headers.get("content-encoding"):
        if declared > limit:
            raise _too_large(model, limit)
        # The length is known and within the cap, and nothing inflates it: one read, no copies.
        return await resp.read_all()
    buf = bytearray()
    while True:
        data = await resp.read_some()
        if not data:
            return bytes(buf)
        if len(buf) + len(data) > limit:
            del buf[:]
            raise _too_large(model, limit)
        buf += data


async def read_at_most(resp: Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body (an error answer's, say): what follows is not waited for."""
    buf = bytearray()
    while len(buf) < limit and (data := await resp.read_some()):
        buf += data
    return bytes(buf[:limit])
