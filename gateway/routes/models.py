"""``GET /v1/models`` and ``GET /v1/models/{id}``: every callable name, models and pools, in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request

from gateway.pipeline.auth import Principal
from gateway.routes.deps import Caller
from gateway.service.gateway import Gateway
from gateway.wire.errors import ModelNotFound

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request, caller: Caller) -> dict[str, Any]:
    """Every name this caller may use."""
    return {"object": "list", "data": list(_entries(request.app.state.gateway, caller))}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request, caller: Caller) -> dict[str, Any]:
    """One name, if this caller may use it: a name the caller may not call does not exist for it."""
    for entry in _entries(request.app.state.gateway, caller, only=model_id):
        return entry
    raise ModelNotFound(f"The model '{model_id}' does not exist", param="model")


def _entries(gw: Gateway, caller: Principal, only: str | None = None) -> Iterator[dict[str, Any]]:
    config = gw.config
    for name, spec in config.models.items():
        if (only is None or name == only) and caller.may_call(name, is_pool=False):
            yield {"id": name, "object": "model", "created": gw.started_at, "owned_by": spec.provider}
    for name, pool in config.pools.items():
        if (only is not None and name != only) or not caller.may_call(name, is_pool=True):
            continue
        fusion: dict[str, Any] = {
            "mode": pool.mode,
            "members": list(pool.members),
            "judge": pool.judge.model if pool.judge else None,
        }
        if pool.merge is not None and pool.merge.analysis:
            fusion["analysis"] = True  # its merges make one more judge call: the comparison of the panel
        if pool.mode == "cascade" and pool.check is not None:
            # a cascade's own calls: the first model, then the check's second model and judge
            fusion["members"] = [m for m in (pool.first, pool.check.agree_with) if m is not None]
            fusion["judge"] = pool.check.judge
            fusion["escalate"] = pool.escalate
        yield {"id": name, "object": "model", "created": gw.started_at, "owned_by": "fusion-gateway", "fusion": fusion}
