"""``GET /v1/fusion/stats``: per pool, fused vs baseline latency, cost and judged quality, live;
``GET /v1/fusion/requests/{id}``: what one recent request cost (see :mod:`gateway.books.receipts`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.routes.deps import Caller
from gateway.service.gateway import Gateway
from gateway.wire import jsonutil
from gateway.wire.errors import RequestNotFound

router = APIRouter()


@router.get("/v1/fusion/stats")
async def fusion_stats(request: Request, caller: Caller) -> Response:
    """Per pool this caller may use: fused vs baseline latency, cost and judged quality."""
    gw: Gateway = request.app.state.gateway
    pools = {
        name: {"mode": p.mode, "baseline": p.baseline.model if p.baseline else None}
        for name, p in gw.config.pools.items()
        if caller.may_call(name, is_pool=True)
    }
    return Response(jsonutil.dumps(gw.stats.snapshot(pools)), media_type="application/json")


@router.get("/v1/fusion/requests/{request_id}")
async def fusion_request(request_id: str, request: Request, caller: Caller) -> Response:
    """One of this caller's recent requests: model, status, cost and, for a pool, its ``fusion`` object."""
    gw: Gateway = request.app.state.gateway
    receipt = gw.receipts.get(request_id, caller.name)
    if receipt is None:
        raise RequestNotFound(
            f"no recent request '{request_id}' of this key on this gateway process "
            f"(the last {gw.receipts.capacity} are kept)",
            param="request_id",
        )
    return Response(jsonutil.dumps(receipt.to_json()), media_type="application/json")
