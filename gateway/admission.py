"""Admission: everything checked before any upstream call, cheapest first.

Who is calling (401), may they call this name (403), is the worst-case cost within the pool's limit
(400), is the key within its rate (429 + Retry-After) and its daily budget (429 insufficient_quota).
Budget is reserved here and settled with the real cost when the request ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import anyio

from gateway.auth import Principal
from gateway.config.loader import ModelSpec
from gateway.errors import InvalidRequest, QuotaExceeded, RateLimited
from gateway.estimate import model_cost, pool_cost
from gateway.jsonutil import decimal_text
from gateway.limits import Limits, Reservation
from gateway.plan import PoolPlan
from gateway.protocol import ChatRequest


@dataclass
class Admission:
    estimate: Decimal
    reservation: Reservation | None = None


async def admit(
    limits: Limits, principal: Principal, req: ChatRequest, target: ModelSpec | PoolPlan
) -> Admission:
    if isinstance(target, PoolPlan):
        estimate = pool_cost(target)
        cap = target.pool.max_cost_usd
        if cap is not None and estimate > cap:
            raise InvalidRequest(
                f"estimated worst-case cost ${decimal_text(estimate)} exceeds pool '{target.name}' "
                f"max_cost_usd ${decimal_text(cap)}; lower max_tokens or shorten the prompt",
                param="max_tokens",
                code="cost_limit_exceeded",
            )
    else:
        estimate = model_cost(target, req.body)
    if principal.rpm is not None:
        wait = await limits.hit(principal.name, principal.rpm)
        if wait is not None:
            raise RateLimited(
                f"key '{principal.name}' is over its limit of {principal.rpm} requests per minute",
                retry_after_s=wait,
            )
    admission = Admission(estimate)
    if principal.budget_usd_per_day is not None:
        admission.reservation = await limits.reserve(principal.name, principal.budget_usd_per_day, estimate)
        if admission.reservation is None:
            raise QuotaExceeded(
                f"key '{principal.name}' has spent its daily budget of ${decimal_text(principal.budget_usd_per_day)}"
                " (resets at 00:00 UTC)",
                retry_after_s=None,
            )
    return admission


async def settle(limits: Limits, admission: Admission, cost: Decimal | None) -> None:
    """Record the real cost. An unknown cost is charged at the estimate: unknown must not look free."""
    if admission.reservation is None:
        return
    with anyio.CancelScope(shield=True):  # even when the request itself is being cancelled
        await limits.settle(admission.reservation, admission.estimate if cost is None else cost)
