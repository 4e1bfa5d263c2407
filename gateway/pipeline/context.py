"""What one chat request carries from admission to its log line."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gateway.pipeline.auth import ANONYMOUS, Principal
from gateway.pipeline.runtime import Runtime
from gateway.service.gateway import Gateway
from gateway.wire.asgi import Headers


@dataclass
class RequestContext:
    gateway: Gateway
    runtime: Runtime  # the config this request started with, kept to its end
    request_id: str
    started: float
    headers: Headers  # sent with every response to this request
    principal: Principal = ANONYMOUS
    #: filled in by the handler: the status sent, the real cost, anything else worth logging
    status: int = 0
    cost: Decimal | None = None
    fields: dict[str, Any] = field(default_factory=dict)
