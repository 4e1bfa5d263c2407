"""What the last requests cost, looked up by request id: ``GET /v1/fusion/requests/{id}``.

With a ledger its records answer first (fleet-wide, surviving restarts); the receipts answer without
one, and for the moment between an answer's last byte and its record's hand-over to the ledger.

A streamed answer's headers go out before its cost is known, and some clients (LangChain, LiteLLM) drop
the fields they do not know from a stream's last chunk, the ``fusion`` object and ``usage.fusion_cost_usd``
included. Such a client keeps the ``x-request-id`` (it may also choose it: the gateway keeps a well-formed
one it is sent) and asks here. Bounded memory: the most recent ``capacity`` requests of this process.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.books.record import FusionMetadata


@dataclass(frozen=True, slots=True)
class Receipt:
    request_id: str
    key: str  # the caller's key name: only that caller may read it
    model: str
    status: int
    cost_usd: Decimal | None
    fusion: FusionMetadata | None  # pool answers only

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "fusion.request",
            "request_id": self.request_id,
            "model": self.model,
            "status": self.status,
            "cost_usd": self.cost_usd,
            "fusion": self.fusion.to_json() if self.fusion is not None else None,
        }


class Receipts:
    def __init__(self, capacity: int = 1_000) -> None:
        self.capacity = capacity
        self._by_id: OrderedDict[str, Receipt] = OrderedDict()

    def add(self, receipt: Receipt) -> None:
        self._by_id[receipt.request_id] = receipt
        self._by_id.move_to_end(receipt.request_id)
        if len(self._by_id) > self.capacity:
            self._by_id.popitem(last=False)

    def get(self, request_id: str, key: str | None) -> Receipt | None:
        """The receipt, if ``key``'s (None: anyone's, for the admin); None for another caller's
        (indistinguishable from unknown)."""
        receipt = self._by_id.get(request_id)
        return receipt if receipt is not None and (key is None or receipt.key == key) else None
