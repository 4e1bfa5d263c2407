"""Worst-case cost of a request, known before any upstream call.

Used to refuse requests over a pool's ``max_cost_usd`` and to reserve a key's budget. Every call the
request could make is counted at its maximum output: each member, each debate round (whose prompt
carries every member's previous answer), and each judge call (whose prompt carries every candidate).
Prompt tokens are the gateway's estimate of the messages and tools. Output is bounded by the request's
``max_tokens``/``max_completion_tokens``, else the pool's ``max_tokens_cap``, else ``ASSUMED_MAX_TOKENS``
(then the figure is an estimate, not a bound). Models without a price count as free here: their cost
is unknown, and the request reports it as such.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from gateway.books.cost import MILLION
from gateway.books.tokens import count_messages, count_text
from gateway.config.loader import ModelSpec
from gateway.pipeline.plan import PoolPlan

ASSUMED_MAX_TOKENS = 4096
#: the judge's instructions and the markers around each candidate
JUDGE_OVERHEAD_TOKENS = 600


def prompt_tokens(body: dict[str, Any]) -> int:
    n = count_messages(body.get("messages") or (), count_text)
    if body.get("tools"):
        n += count_text(orjson.dumps(body["tools"]).decode())
    return n


def max_output(body: dict[str, Any], cap: int | None = None) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        v = body.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return min(v, cap) if cap else v
    return cap or ASSUMED_MAX_TOKENS


def _call(spec: ModelSpec | None, prompt: int, output: int) -> Decimal:
    if spec is None or spec.price is None:
        return Decimal(0)
    return (prompt * spec.price.input + output * spec.price.output) / MILLION


def model_cost(spec: ModelSpec, body: dict[str, Any]) -> Decimal:
    return _call(spec, prompt_tokens(body), max_output(body))


def pool_cost(plan: PoolPlan) -> Decimal:
    body = plan.body
    prompt = prompt_tokens(body)
    out = max_output(body, plan.pool.max_tokens_cap)
    n = len(plan.members)
    total = sum((_call(spec, prompt, out) for _, spec in plan.members), Decimal(0))
    if plan.escalate is not None:  # cascade: its own calls, a confidence question, then possibly the pool
        if plan.judge is not None:
            total += _call(plan.judge, prompt + out + JUDGE_OVERHEAD_TOKENS, out)
        return total + pool_cost(plan.escalate)
    if plan.mode == "debate":
        revision_prompt = prompt + n * out + JUDGE_OVERHEAD_TOKENS
        total += plan.rounds * sum((_call(spec, revision_prompt, out) for _, spec in plan.members), Decimal(0))
    if n > 1 and plan.judge is not None:
        judge_prompt = prompt + n * out + JUDGE_OVERHEAD_TOKENS
        verdicts = 2 if (plan.pool.judge and plan.pool.judge.swap and plan.mode != "merge") else 1
        merges = plan.mode == "merge" or (plan.mode == "debate" and plan.final == "merge")
        if merges and plan.pool.merge is not None and plan.pool.merge.analysis:
            total += _call(plan.judge, judge_prompt, out)  # the comparison of the panel...
            judge_prompt += out  # ...which the answer's prompt then carries
        total += verdicts * _call(plan.judge, judge_prompt, out)
    return total
