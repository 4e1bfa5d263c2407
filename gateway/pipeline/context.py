"""What one request carries from admission to its log line, and what it may use of the running gateway."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import anyio

from gateway.books.metrics import Metrics
from gateway.books.receipts import Receipts
from gateway.books.stats import StatsStore
from gateway.pipeline.auth import ANONYMOUS, Principal
from gateway.pipeline.baseline import BaselineSampler
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
