"""Admission: everything checked before any upstream call, cheapest first.

Who is calling (401), may they call this name (404, as for a name that does not exist), is the
worst-case cost within the pool's limit (400), is the key within its rate (429 + Retry-After) and its
daily budget (429 insufficient_quota). Budget is reserved here and settled with the real cost when the request ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import anyio

from gateway.books.limits import Limits, Reservation
from gateway.config.loader import ModelSpec
from gateway.pipeline.auth import Principal
from gateway.pipeline.estimate import model_cost, pool_cost
from gateway.pipeline.plan import PoolPlan
from gateway.wire.errors import InvalidRequest, QuotaExceeded, RateLimited
from gateway.wire.jsonutil import decimal_text
from gateway.wire.protocol import ChatRequest


@dataclass
class Admission:
    estimate: Decimal | None = None  # worked out only when a limit needs it: it reads the whole prompt
    reservation: Reservation | None = None


NO_LIMITS = Admission()


async def admit(
    limits: Limits, principal: Principal, req: ChatRequest, target: ModelSpec | PoolPlan
) -> Admission:
    cap = target.pool.max_cost_usd if isinstance(target, PoolPlan) else None
    if cap is None and principal.rpm is None and principal.budget_usd_per_day is None:
        return NO_LIMITS  # the common case, and the hot path: nothing to count
    estimate = None
    if isinstance(target, PoolPlan) and cap is not None:
        estimate = pool_cost(target)
        if estimate > cap:
            raise InvalidRequest(
                f"estimated worst-case cost ${decimal_text(estimate)} exceeds pool '{target.name}' "
                f"max_cost_usd ${decimal_text(cap)}; lower max_tokens or shorten the prompt",
                param="max_tokens",
                code="cost_limit_exceeded",
            )
    if principal.rpm is not None:
        wait = await limits.hit(principal.name, principal.rpm)
        if wait is not None:
            raise RateLimited(
                f"key '{principal.name}' is over its limit of {principal.rpm} requests per minute",
                retry_after_s=wait,
            )
    admission = Admission(estimate)
    if principal.budget_usd_per_day is not None:
        if admission.estimate is None:
            admission.estimate = pool_cost(target) if isinstance(target, PoolPlan) else model_cost(target, req.body)
        admission.reservation = await limits.reserve(principal.name, principal.budget_usd_per_day,
                                                     admission.estimate)
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
    charged = cost if cost is not None else admission.estimate or Decimal(0)
    with anyio.CancelScope(shield=True):  # even when the request itself is being cancelled
        await limits.settle(admission.reservation, charged)
