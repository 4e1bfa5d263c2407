"""FastAPI dependencies shared by the non-hot-path routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from gateway.books.ledger.queries import parse_since
from gateway.pipeline.auth import Principal
from gateway.service.gateway import Gateway
from gateway.wire.errors import InvalidRequest


def principal(request: Request) -> Principal:
    """The caller's key (401 if keys are configured and it is missing or wrong)."""
    gw: Gateway = request.app.state.gateway
    return gw.runtime.keys.authenticate(request.headers.get("authorization"))


Caller = Annotated[Principal, Depends(principal)]


def ledger_since(since: str | None) -> datetime | None:
    """The ``since`` query parameter (``24h``, ``7d``, an ISO time), or a 400 naming it."""
    if since is None:
        return None
    try:
        return parse_since(since)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="since") from None
