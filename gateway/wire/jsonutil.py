"""JSON in and out of the gateway: orjson, with exact decimals.

Costs are ``Decimal``. orjson has no Decimal support and a float would drift, so a cost is written as
an ``orjson.Fragment`` holding its exact decimal text: the reader sees a plain JSON number.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

NANO = Decimal("0.000000001")

JSONDecodeError = orjson.JSONDecodeError


def decimal_text(value: Decimal) -> str:
    """``value`` rounded to 9 decimals, written without exponent or trailing zeros: ``0.00012``."""
    q = value.quantize(NANO)
    return format(q.normalize(), "f") if q != 0 else "0"


def decimal_fragment(value: Decimal) -> orjson.Fragment:
    """A JSON number holding exactly :func:`decimal_text` of ``value``."""
    return orjson.Fragment(decimal_text(value).encode())


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return decimal_fragment(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
