"""What one request's upstream calls were: a record per call, and the ledger that holds them.

Every call the gateway makes (passthrough, pool member, judge, baseline, comparison) leaves a
:class:`CallRecord`, whether it succeeded, failed, timed out or was cancelled; the request's
:class:`Ledger` holds them and answers "what did this request cost, and in which role".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from gateway.books.cost import sum_costs
from gateway.books.usage import Usage, total
from gateway.wire.errors import UpstreamError

#: why a call was made
CallRole = Literal["passthrough", "member", "judge", "baseline", "comparison"]
#: how it ended (``pending`` while it runs)
CallStatus = Literal["pending", "ok", "error", "timeout", "cancelled"]


@dataclass(slots=True)
class CallRecord:
    model: str
    role: CallRole
    pool: str
    status: CallStatus = "pending"
    error: UpstreamError | None = None
    usage: Usage | None = None
    cost: Decimal | None = None
    started: float = 0.0
    ended: float = 0.0
    #: when the upstream's answer began (its response headers); 0 if it never did
    first_byte: float = 0.0
    attempts: int = 0
    #: debate round (0 = the fan-out)
    round: int = 0
    #: position in the pool's members, for member calls
    member: int | None = None
    #: the model that answered (``model`` unless a fallback did) and the deployment that served it
    answered_by: str | None = None
    deployment: str | None = None
    #: why a fallback answered: failure, rate_limited or unavailable (the model's deployments out of rotation)
    fallback_reason: str | None = None

    @property
    def latency_ms(self) -> float:
        return max(0.0, (self.ended - self.started) * 1000)

    @property
    def error_type(self) -> str | None:
        if self.status == "ok":
            return None
        if self.status == "cancelled":
            return "cancelled"
        return self.error.kind if self.error is not None else self.status


@dataclass
class Ledger:
    """Every upstream call one request made."""

    records: list[CallRecord] = field(default_factory=list)

    def add(self, record: CallRecord) -> CallRecord:
        self.records.append(record)
        return record

    def by_role(self, *roles: CallRole) -> list[CallRecord]:
        return [r for r in self.records if r.role in roles]

    def cost(self, *roles: CallRole) -> Decimal | None:
        recs = self.by_role(*roles) if roles else self.records
        return sum_costs(r.cost for r in recs if r.usage is not None)

    def usage(self, *roles: CallRole) -> Usage:
        recs = self.by_role(*roles) if roles else self.records
        return total(r.usage for r in recs)
