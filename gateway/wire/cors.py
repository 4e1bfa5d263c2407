"""CORS: lets a web app on another origin call the gateway from a browser, with a client key.

One ASGI wrapper around the whole app, built only when ``server.cors`` lists origins: with CORS off
the request path is exactly what it is without this module.

- A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered here,
  never by a route: 204 with the ``access-control-allow-*`` headers when the origin, the method and
  every requested header are allowed; otherwise a 403 in the OpenAI envelope that says why, with no
  CORS header, so the browser refuses the real request.
- Every other response (JSON, streams and errors alike, from the raw-ASGI routes and FastAPI's) gets
  ``access-control-allow-origin`` and the exposed headers when its request came from an allowed origin.
  ``vary: origin`` goes on every response: what a response carries depends on the ``Origin`` sent, and
  a shared cache must not hand one origin's answer to another.

Keys travel in headers (``Authorization``, ``x-api-key``), which CORS does not count as credentials, so
``*`` is enough for any origin; ``access-control-allow-credentials`` is sent only when asked for (cookies
or HTTP authentication added by a proxy in front), and then the origins must be listed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.wire.asgi import Headers, Message, Receive, Scope, Send, send_error
from gateway.wire.errors import GatewayError

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the methods the gateway's routes answer (GET and HEAD, POST); a preflight asks for one of them
METHODS = ("GET", "HEAD", "POST")


@dataclass(frozen=True)
class CorsPolicy:
    #: exact origins (``https://app.example.com``), or ``*`` for any
    origins: Sequence[str]
    #: request header names, lower case; ``prefix-*`` allows every name that starts with ``prefix-``
    allow_headers: Sequence[str]
    #: response headers a page's script may read besides the always-readable ones
    expose_headers: Sequence[str]
    #: how long a browser may keep a preflight's answer
    max_age_s: int
    allow_credentials: bool = False


class CorsRefused(GatewayError):
    """A preflight the policy does not allow: the browser will not send the request it asked about."""

    status = 403
    error_type = "permission_error"
    default_code = "cors_not_allowed"


class CORS:
    """The ASGI wrapper. Per request it reads the three headers it needs in one pass over the scope's
    headers; everything it sends back is built once, here."""

    def __init__(
        self, app: ASGIApp, policy: CorsPolicy, answered: Callable[[Scope, int, float], None] | None = None
    ) -> None:
        """``answered(scope, status, started)``: told of each preflight answered here (for the access log;
        ``started`` is its ``time.monotonic()`` on arrival)."""
        if "*" in policy.origins and policy.allow_credentials:
            raise ValueError("CORS credentials need the origins listed: browsers refuse them for '*'")
        self.app = app
        self._answered = answered
        self._any = "*" in policy.origins
        self._origins = frozenset(o.encode("latin-1") for o in policy.origins if o != "*")
        self._names = frozenset(h for h in policy.allow_headers if not h.endswith("*"))
        self._prefixes = tuple(h[:-1] for h in policy.allow_headers if h.endswith("*"))
        #: sent with the allowed origin on every answer to it
        self._common: Headers = []
        if policy.allow_credentials:
            self._common.append((b"access-control-allow-credentials", b"true"))
        self._exposed: Headers = []
        if policy.expose_headers:
            self._exposed.append((b"access-control-expose-headers", ", ".join(policy.expose_headers).encode()))
        self._preflight: Headers = [
            (b"access-control-allow-methods", ", ".join(METHODS).encode()),
            (b"access-control-max-age", str(policy.max_age_s).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = method = requested = None
        for k, v in scope["headers"]:
            if k == b"origin":
                origin = v
            elif k == b"access-control-request-method":
                method = v
            elif k == b"access-control-request-headers":
                requested = v
        if origin is not None and method is not None and scope["method"] == "OPTIONS":
            started = time.monotonic()
            status = await self._answer_preflight(send, origin, method, requested)
            if self._answered is not None:
                self._answered(scope, status, started)
            return
        extra = self._allow(origin) + self._exposed if origin is not None and self._allowed(origin) else []
        await self.app(scope, receive, _adding(send, extra))

    def _allowed(self, origin: bytes) -> bool:
        return self._any or origin in self._origins

    def _allow(self, origin: bytes) -> Headers:
        return [(b"access-control-allow-origin", b"*" if self._any else origin), *self._common]

    def _header_allowed(self, name: str) -> bool:
        return name in self._names or name.startswith(self._prefixes)

    async def _answer_preflight(self, send: Send, origin: bytes, method: bytes, requested: bytes | None) -> int:
        names = [n.strip().lower() for n in (requested or b"").decode("latin-1").split(",") if n.strip()]
        refusal = None
        if not self._allowed(origin):
            refusal = f"origin '{origin.decode('latin-1')}' is not allowed (server.cors.allow_origins)"
        elif method.decode("latin-1") not in METHODS:
            refusal = f"method '{method.decode('latin-1')}' is not allowed: the API answers {', '.join(METHODS)}"
        else:
            refused = [n for n in names if not self._header_allowed(n)]
            if refused:
                refusal = f"request header '{refused[0]}' is not allowed (server.cors.allow_headers)"
        if refusal is not None:
            exc = CorsRefused(f"CORS preflight refused: {refusal}")
            await send_error(send, exc, [_VARY])
            return exc.http_status
        headers = [*self._allow(origin), *self._preflight, _VARY]
        if names:
            headers.append((b"access-control-allow-headers", ", ".join(names).encode()))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 204


_VARY = (b"vary", b"origin")


def _adding(send: Send, extra: Headers) -> Send:
    """``send``, with ``extra`` and ``vary: origin`` added to the response's headers."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*_vary_origin(message.get("headers", ())), *extra]
        await send(message)

    return wrapped


def _vary_origin(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """``headers`` with ``origin`` in their ``vary`` (added to one the app set, or a new one)."""
    out: Headers = []
    varied = False
    for k, v in headers:
        if k.lower() == b"vary":
            varied = True
            if v.strip() != b"*" and b"origin" not in v.lower():
                v = v + b", origin"
        out.append((k, v))
    if not varied:
        out.append(_VARY)
    return out
