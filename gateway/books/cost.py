"""Exact cost of upstream calls, in ``Decimal`` USD.

cost = uncached prompt tokens x input + cached prompt tokens x cached_input + completion tokens x output,
prices per 1M tokens, and prompt tokens written to a cache at ``cache_write_input`` where the upstream
reports them (Anthropic). Reasoning tokens are completion tokens. A model without a price costs ``None``,
never 0: an unknown cost must not look free.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from gateway.books.usage import Usage
from gateway.config.models import Price

MILLION = Decimal(1_000_000)


def call_cost(price: Price | None, usage: Usage | None) -> Decimal | None:
    if price is None or usage is None:
        return None
    fresh = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    micro = (
        fresh * price.input
        + usage.cached_tokens * price.cached
        + usage.cache_write_tokens * price.cache_write
        + usage.completion_tokens * price.output
    )
    return micro / MILLION


def sum_costs(costs: Iterable[Decimal | None]) -> Decimal | None:
    """Sum of known costs; None if any part is unknown (a partial sum would understate)."""
    out = Decimal(0)
    for c in costs:
        if c is None:
            return None
        out += c
    return out
