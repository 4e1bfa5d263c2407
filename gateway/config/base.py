"""What every section of the config is built from: the strict base model and the common field types."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

PositiveSeconds = Annotated[float, Field(gt=0)]
Usd = Annotated[Decimal, Field(ge=0)]


def http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, got '{v}'")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
