"""``GET /v1/fusion/stats``: per pool, fused vs baseline latency, cost and judged quality.

From the ledger when there is one (every worker and replica, surviving restarts; ``since`` and ``pool``
narrow it), otherwise from this process's memory.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.books.ledger import queries
from gateway.routes.deps import Caller, ledger_since
from gateway.service.gateway import Gateway
from gateway.wire import jsonutil

router = APIRouter()


@router.get("/v1/fusion/stats")
async def fusion_stats(request: Request, caller: Caller, since: str | None = None, pool: str | None = None) -> Response:
    """Per pool this caller may use: fused vs baseline latency, cost and judged quality."""
    gw: Gateway = request.app.state.gateway
    pools = {
        name: {"mode": p.mode, "baseline": p.baseline.model if p.baseline else None}
        for name, p in gw.config.pools.items()
        if caller.may_call(name, is_pool=True) and (pool is None or name == pool)
    }
    if gw.ledger is None:
        body = gw.stats.snapshot(pools)
    else:
        start = ledger_since(since)
        await gw.ledger.flush()  # this process's own recent requests are included
        body = await queries.stats(gw.ledger.store.engine, pools, start)
    return Response(jsonutil.dumps(body), media_type="application/json")
