"""``GET /v1/models``: every callable name, models and pools, in OpenAI's list shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.routes.deps import Caller
from gateway.service.gateway import Gateway

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request, caller: Caller) -> dict[str, Any]:
    """Every name this caller may use."""
    gw: Gateway = request.app.state.gateway
    config = gw.config
    data: list[dict[str, Any]] = []
    for name, spec in config.models.items():
        if caller.may_call(name, is_pool=False):
            data.append({"id": name, "object": "model", "created": gw.started_at, "owned_by": spec.provider})
    for name, pool in config.pools.items():
        if not caller.may_call(name, is_pool=True):
            continue
        fusion: dict[str, Any] = {
            "mode": pool.mode,
            "members": list(pool.members),
            "judge": pool.judge.model if pool.judge else None,
        }
        if pool.mode == "cascade" and pool.check is not None:
            # a cascade's own calls: the first model, then the check's second model and judge
            fusion["members"] = [m for m in (pool.first, pool.check.agree_with) if m is not None]
            fusion["judge"] = pool.check.judge
            fusion["escalate"] = pool.escalate
        data.append(
            {"id": name, "object": "model", "created": gw.started_at, "owned_by": "fusion-gateway", "fusion": fusion}
        )
    return {"object": "list", "data": data}
