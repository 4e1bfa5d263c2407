"""FastAPI dependencies shared by the non-hot-path routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.pipeline.auth import Principal
from gateway.service.gateway import Gateway


def principal(request: Request) -> Principal:
    """The caller's key (401 if keys are configured and it is missing or wrong)."""
    gw: Gateway = request.app.state.gateway
    return gw.runtime.keys.authenticate(request.headers.get("authorization"))


Caller = Annotated[Principal, Depends(principal)]
