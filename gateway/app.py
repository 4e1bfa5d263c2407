"""The app factory. No import-time side effects: everything is built here, owned by one :class:`Gateway`.

``POST /v1/chat/completions`` is served by a raw ASGI handler in front of FastAPI: it is the hot path,
and FastAPI's request validation and middleware stack cost about half the throughput there (measured,
see README). Every other route is ordinary FastAPI, and one exception handler answers the OpenAI
error envelope for all of them.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.config import GatewayConfig, default_config_path, load_config
from gateway.routes import admin, embeddings, models, ops, stats, ui
from gateway.routes.chat import serve
from gateway.routes.messages import MESSAGES
from gateway.routes.responses import RESPONSES
from gateway.routes.shape import CHAT_INBOUND, Inbound
from gateway.service.gateway import Gateway
from gateway.wire.asgi import Receive, Scope, Send, send_error
from gateway.wire.cors import CORS, CorsPolicy
from gateway.wire.errors import GatewayError, InvalidRequest, ModelNotFound, envelope

CHAT_PATH = "/v1/chat/completions"
#: the routes served as raw ASGI, each an inbound API over the same pipeline (see routes/shape.py)
INBOUND: dict[str, Inbound] = {CHAT_PATH: CHAT_INBOUND, "/v1/responses": RESPONSES, "/v1/messages": MESSAGES}
log = logging.getLogger("fusion_gateway")


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
        await self.api(scope, receive, send)


class CorsGatewayApp(GatewayApp):
    """The same app behind the CORS wrapper (``server.cors``). Built only when CORS is on, so that without
    it the request path is exactly :class:`GatewayApp`'s."""

    def __init__(self, gateway: Gateway, api: FastAPI, policy: CorsPolicy) -> None:
        super().__init__(gateway, api)
        self._cors = CORS(super().__call__, policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._cors(scope, receive, send)


class _MethodNotAllowed(InvalidRequest):
    status = 405
    default_code = "method_not_allowed"


def create_app(config: GatewayConfig, config_path: str | None = None) -> GatewayApp:
    """``config_path``: where ``config`` came from, so that it can be reloaded (None: no reloading)."""
    gateway = Gateway(config, config_path)
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
    api.include_router(admin.router)
    api.include_router(ui.router)
    _install_error_handlers(api)
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
    app = create_app(config, path)
    tune_gc()
    return app


def _install_error_handlers(api: FastAPI) -> None:
    def respond(exc: GatewayError) -> JSONResponse:
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
