"""What one request carries from admission to its log line, and what it may use of the running gateway."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import anyio

from gateway.books.calls import CallRecord
from gateway.books.ledger.entry import Kind
from gateway.books.ledger.writer import LedgerWriter
from gateway.books.metrics import Metrics
from gateway.books.receipts import Receipts
from gateway.books.record import FusionMetadata
from gateway.books.stats import StatsStore
from gateway.pipeline.auth import ANONYMOUS, Principal
from gateway.pipeline.baseline import BaselineSampler
from gateway.pipeline.cache import ResponseCache
from gateway.pipeline.runtime import Runtime
from gateway.wire.asgi import Headers


class Services(Protocol):
    """The parts of the running gateway a request uses (implemented by ``gateway.service.Gateway``)."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def stats(self) -> StatsStore: ...

    @property
    def receipts(self) -> Receipts: ...

    @property
    def baseline(self) -> BaselineSampler: ...

    @property
    def log(self) -> logging.Logger: ...

    #: where finished requests are remembered (None: ``ledger: none``)
    @property
    def ledger(self) -> LedgerWriter | None: ...

    #: the response cache, None when it is off
    @property
    def cache(self) -> ResponseCache | None: ...

    #: set when the shutdown grace has run out: open streams end with an in-band error
    @property
    def draining(self) -> anyio.Event: ...


@dataclass
class RequestContext:
    services: Services
    runtime: Runtime  # the config this request started with, kept to its end
    request_id: str
    started: float
    headers: Headers  # sent with every response to this request
    principal: Principal = ANONYMOUS
    #: filled in as the request goes: the status sent, the real cost, anything else worth logging
    status: int = 0
    cost: Decimal | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    #: set when the answer may be cached: the key to store it under
    cache_key: str | None = None
    #: for the ledger: what the request became, the calls it made, its fusion metadata, its content,
    #: and what a cache hit saved
    kind: Kind = "refused"
    calls: Sequence[CallRecord] = ()
    meta: FusionMetadata | None = None
    content: tuple[Any, Any] | None = None
    saved: Decimal | None = None
