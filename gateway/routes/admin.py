"""``POST /admin/reload``: reload the config file now (admin key required)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.pipeline.auth import UNAUTHORIZED
from gateway.service.gateway import Gateway
from gateway.wire.errors import AuthenticationFailed, InvalidRequest

router = APIRouter()


@router.post("/admin/reload")
async def reload_config(request: Request) -> JSONResponse:
    gw: Gateway = request.app.state.gateway
    if not gw.runtime.keys.is_admin(request.headers.get("authorization")):
        raise AuthenticationFailed(UNAUTHORIZED)
    result = await gw.reloader.reload("admin request")
    if not result.ok:
        # The file is invalid: nothing changed. Say why, with file and line.
        raise InvalidRequest(result.message, code="config_invalid")
    return JSONResponse({"status": "reloaded", "path": gw.reloader.path})
