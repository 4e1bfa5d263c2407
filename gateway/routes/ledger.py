"""What the gateway remembers of requests, over HTTP: one request by id, the recent requests, spend.

``GET /v1/fusion/requests/{id}`` answers from the ledger when there is one (every worker and replica,
with the request's calls, latency breakdown and shadow baseline), and otherwise from the receipts this
process keeps of its last requests (:mod:`gateway.books.receipts`; also the answer while a request that
just ended is not in the ledger yet, or while the database does not answer). Either way it gives
``request_id``, ``model``, ``status``, ``cost_usd`` and, for a pool, the ``fusion`` object the caller
was sent: a client whose SDK drops the stream's last fields looks its cost up by ``x-request-id``. The
list and spend need the ledger.

A client key sees only its own requests and spend; the admin key (or any caller when no keys are
configured) sees everyone's. Money is exact: decimal JSON numbers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.books.ledger import queries
from gateway.books.ledger.writer import LedgerWriter
from gateway.routes.deps import ledger_since
from gateway.service.gateway import Gateway
from gateway.wire import jsonutil
from gateway.wire.errors import InvalidRequest, RequestNotFound

router = APIRouter()


class LedgerOff(InvalidRequest):
    status = 404
    default_code = "ledger_off"


async def _ledger(request: Request) -> LedgerWriter:
    gw: Gateway = request.app.state.gateway
    if gw.ledger is None:
        raise LedgerOff("the ledger is off (ledger: none): nothing is remembered")
    await gw.ledger.flush()  # read your own writes
    return gw.ledger


def _scope(request: Request) -> str | None:
    """The key whose records this caller may see; None: all of them (401 for a missing or wrong key)."""
    gw: Gateway = request.app.state.gateway
    keys = gw.runtime.keys
    authorization = request.headers.get("authorization")
    if not keys.enabled or keys.is_admin(authorization):
        return None
    return keys.authenticate(authorization).name


def _json(body: object) -> Response:
    return Response(jsonutil.dumps(body), media_type="application/json")


@router.get("/v1/fusion/requests/{request_id}")
async def get_request(request: Request, request_id: str) -> Response:
    """One request: its cost and ``fusion`` object; from the ledger also its calls, latency breakdown and
    shadow baseline (if it was sampled)."""
    scope = _scope(request)
    gw: Gateway = request.app.state.gateway
    ledger = gw.ledger
    # Read your own writes: what this process queued is written first (unless the database refuses).
    if ledger is not None and await ledger.flush():
        found = await queries.request(ledger.store.engine, request_id, scope)
        if found is not None:
            return _json(found)
    receipt = gw.receipts.get(request_id, scope)
    if receipt is not None:
        return _json(receipt.to_json())
    if ledger is not None:
        raise RequestNotFound(f"no request '{request_id}' in the ledger", param="request_id")
    raise RequestNotFound(
        f"no recent request '{request_id}' of this key on this gateway process "
        f"(the last {gw.receipts.capacity} are kept)",
        param="request_id",
    )


@router.get("/v1/fusion/requests")
async def list_requests(
    request: Request, pool: str | None = None, key: str | None = None, status: int | None = None,
    limit: int = 50,
) -> Response:
    """The most recent requests, newest first (``pool`` also matches a model called directly)."""
    scope = _scope(request)
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit must be between 1 and 1000", param="limit")
    ledger = await _ledger(request)
    if scope is not None and key is not None and key != scope:
        return _json({"object": "list", "data": []})
    rows = await queries.recent(ledger.store.engine, key=scope or key, pool=pool, status=status, limit=limit)
    return _json({"object": "list", "data": rows})


@router.get("/v1/fusion/spend")
async def spend(request: Request, group_by: str = "key", since: str | None = None) -> Response:
    """Exact spend grouped by key, pool, upstream model or UTC day."""
    if group_by not in queries.GROUPS:
        raise InvalidRequest(
            f"group_by must be one of {', '.join(queries.GROUPS)}, not '{group_by}'", param="group_by"
        )
    scope = _scope(request)
    start = ledger_since(since)
    ledger = await _ledger(request)
    rows = await queries.spend(ledger.store.engine, group_by, start, scope)
    return _json({"object": "fusion.spend", "group_by": group_by, "since": since, "data": rows})
