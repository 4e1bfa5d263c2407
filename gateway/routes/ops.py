"""Health and metrics: ``/livez``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.books.metrics import CONTENT_TYPE
from gateway.service.gateway import Gateway
from gateway.wire.errors import RETRY_AFTER_503

router = APIRouter()


@router.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    if not gw.ready:
        return JSONResponse({"status": "not ready"}, status_code=503, headers={"retry-after": RETRY_AFTER_503})
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return Response(gw.metrics.exposition(), media_type=CONTENT_TYPE)
