"""The app factory. No import-time side effects: everything is built here, owned by one :class:`Gateway`.

``POST /v1/chat/completions`` is served by a raw ASGI handler in front of FastAPI: it is the hot path,
and FastAPI's request validation and middleware stack cost about half the throughput there (measured,
see README). Every other route is ordinary FastAPI, and one exception handler answers the OpenAI
error envelope for all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.books.logs import LOGGER, log_request
from gateway.config import GatewayConfig, default_config_path, load_config
from gateway.routes import admin, embeddings, ledger, models, ops, stats, ui
from gateway.routes.chat import CHAT_PATH, serve
from gateway.routes.messages import MESSAGES
from gateway.routes.responses import RESPONSES
from gateway.routes.shape import CHAT_INBOUND, Inbound
from gateway.service.gateway import Gateway
from gateway.wire.asgi import Message, Receive, Scope, Send, client_host, send_error
from gateway.wire.cors import CORS, CorsPolicy
from gateway.wire.errors import GatewayError, InvalidRequest, ModelNotFound, envelope

#: the routes served as raw ASGI, each an inbound API over the same pipeline (see routes/shape.py)
INBOUND: dict[str, Inbound] = {CHAT_PATH: CHAT_INBOUND, "/v1/responses": RESPONSES, "/v1/messages": MESSAGES}

#: the address ``serve`` binds, handed to worker processes (reloads are held to the rules for it)
HOST_ENV = "FUSION_GATEWAY_SERVE_HOST"
log = logging.getLogger(LOGGER)
#: polled by probes and scrapers every few seconds: their lines are debug, not info
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
#: routes that write their own request line, with the key, model, tokens and cost in it
_SELF_LOGGED = frozenset({"/v1/embeddings"})


class GatewayApp:
    """ASGI entry: the chat completions hot path, then FastAPI for the rest."""

    def __init__(self, gateway: Gateway, api: FastAPI) -> None:
        self.gateway = gateway
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inbound = INBOUND.get(scope["path"]) if scope["type"] == "http" else None
        if inbound is not None:
            if scope["method"] == "POST":
                try:
                    await serve(self.gateway, scope, receive, send, inbound)
                except Exception:
                    # A bug, not a caller or upstream error. Log it; answer the envelope if we still can.
                    log.exception("unhandled error in %s", scope["path"])
                    with contextlib.suppress(Exception):
                        await inbound.shaper.error(send, GatewayError("internal error"))
            else:
                await send_error(send, _MethodNotAllowed(f"only POST is allowed on {scope['path']}"))
            return
        if scope["type"] != "http" or scope["path"] in _SELF_LOGGED:
            await self.api(scope, receive, send)
            return
        await self._logged(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every other route, with its access line (the chat route writes its own, with more in it)."""
        started = time.monotonic()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.api(scope, receive, sending)
        finally:
            _access_line(scope, status or 499, started)


def _access_line(scope: Scope, status: int, started: float) -> None:
    path = scope["path"]
    fields = {"method": scope["method"], "path": path, "client": client_host(scope), "status": status,
              "latency_ms": round((time.monotonic() - started) * 1000, 3)}
    log_request(log, fields, logging.DEBUG if path in _QUIET_PATHS else logging.INFO)


class CorsGatewayApp(GatewayApp):
    """The same app behind the CORS wrapper (``server.cors``). Built only when CORS is on, so that without
    it the request path is exactly :class:`GatewayApp`'s."""

    def __init__(self, gateway: Gateway, api: FastAPI, policy: CorsPolicy) -> None:
        super().__init__(gateway, api)
        # preflights are answered by the wrapper itself: they get their access line from it
        self._cors = CORS(super().__call__, policy, answered=_access_line)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._cors(scope, receive, send)


class _MethodNotAllowed(InvalidRequest):
    status = 405
    default_code = "method_not_allowed"


def create_app(config: GatewayConfig, config_path: str | None = None, host: str | None = None) -> GatewayApp:
    """``config_path``: where ``config`` came from, so that it can be reloaded (None: no reloading);
    ``host``: the address served on, when the command line overrides ``server.host``."""
    gateway = Gateway(config, config_path, host)
    api = FastAPI(
        title="fusion-gateway",
        lifespan=gateway.lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    api.state.gateway = gateway
    api.include_router(models.router)
    api.include_router(embeddings.router)
    api.include_router(ops.router)
    api.include_router(stats.router)
    api.include_router(ledger.router)
    api.include_router(admin.router)
    api.include_router(ui.router)
    _install_error_handlers(api, gateway)
    cors = config.server.cors
    if not cors.enabled:
        return GatewayApp(gateway, api)
    policy = CorsPolicy(cors.allow_origins, cors.allow_headers, cors.expose_headers, cors.max_age_s,
                        cors.allow_credentials)  # fmt: skip
    return CorsGatewayApp(gateway, api, policy)


def create_app_from_env() -> GatewayApp:
    """Factory for ``uvicorn --factory`` and worker processes: the config path comes from the environment."""
    from gateway.books import logs

    path = default_config_path()
    config = load_config(path)
    logs.configure(config.logging.level)
    app = create_app(config, path, os.environ.get(HOST_ENV))
    tune_gc()
    return app


def _install_error_handlers(api: FastAPI, gateway: Gateway) -> None:
    def respond(exc: GatewayError) -> JSONResponse:
        gateway.metrics.refused(exc.http_status, exc.code)
        return JSONResponse(exc.envelope(), status_code=exc.http_status, headers=exc.headers())

    async def gateway_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        return respond(exc)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return respond(InvalidRequest(str(first.get("msg", "invalid request")), param=param))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return respond(_NotFound("no such route"))
        kind = "invalid_request_error" if exc.status_code < 500 else "api_error"
        return JSONResponse(envelope(str(exc.detail), kind), status_code=exc.status_code)

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return respond(GatewayError("internal error"))

    api.add_exception_handler(GatewayError, gateway_error)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(Exception, unexpected)


class _NotFound(ModelNotFound):
    default_code = "not_found"


def tune_gc() -> None:
    """Collector settings for a long-running server, applied once start-up is done.

    ``gc.freeze()`` moves every object created so far (modules, config, app) out of the collector's
    view, so full collections stop rescanning them; a higher first threshold makes young-generation
    collections rarer on a request path that allocates many short-lived objects. Together about 10-20%
    less CPU per passthrough request on the reference machine (``tests/benchmarks``).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    _tune_malloc()


#: glibc's ``mallopt`` parameter for the size from which allocations get their own memory mapping
_M_MMAP_THRESHOLD = -3


def _tune_malloc() -> None:
    """Keep glibc's mmap threshold fixed at its default of 128 KiB.

    By default glibc raises the threshold to the size of any mapped block that is freed (up to
    32 MiB), so after one large upstream answer every later buffer of that size comes from the heap,
    where freed memory mostly stays with the process. Fixed, each large buffer is its own mapping and
    goes back to the system when it is dropped: RSS returns to where it was after an oversized answer
    (measured in tests/test_upstream_limits.py). No effect, and no error, without glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
