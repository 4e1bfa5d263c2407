"""``GET /v1/fusion/stats``: per pool, fused vs baseline latency, cost and judged quality, live."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.routes.deps import Caller
from gateway.service.gateway import Gateway
from gateway.wire import jsonutil

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
