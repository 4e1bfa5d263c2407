"""Pairwise preference, pool answer vs baseline answer, asked of a judge model through the gateway.

The prompt is the gateway's own judge prompt (:mod:`fusion_modes.judge`: anonymous labels, nonce-fenced
candidates, a strict JSON verdict), asked twice, once in each presentation order. Both votes for the
pool: a win; both for the baseline: a loss; one each (position bias, or an undecided judge): a tie.
Identical answers are a tie without asking. A failed or unparseable vote makes the comparison an
``error`` (left out of win/tie/loss, and counted); a vote the gateway failed to answer is asked again on
a rerun, an unusable verdict is not (the judge would say the same).
"""

from __future__ import annotations

import hashlib
import random
from decimal import Decimal
from typing import Any

from fusion_modes.base import Candidate, JudgeFailed
from fusion_modes.both_orders import both_orders
from fusion_modes.judge import (
    Ballot,
    ParsedVerdict,
    make_ballot,
    parse_verdict,
    verdict_messages,
    verdict_response_format,
)
from gateway.compare.client import GatewayClient
from gateway.compare.dataset import Item

MAX_CANDIDATE_CHARS = 16_000
SIDES = ("pool", "baseline")


def judgement_key(item: Item, pool: str, baseline: str, judge: str, pool_answer: str, baseline_answer: str) -> str:
    """Changes with either answer: if an answer is redone, so is its judgement."""
    digest = hashlib.sha256("\x00".join((pool_answer, baseline_answer)).encode()).hexdigest()[:16]
    return f"{item.key}:{pool}:vs:{baseline}:judge:{judge}:{digest}"


async def prefer(
    client: GatewayClient, judge: str, item: Item, pool: str, baseline: str, pool_answer: str, baseline_answer: str
) -> dict[str, Any]:
    base: dict[str, Any] = {"item": item.key, "line": item.line, "pool": pool, "baseline": baseline, "judge": judge}
    if pool_answer.strip() == baseline_answer.strip():
        return {**base, "status": "ok", "outcome": "tie", "reason": "identical answers", "votes": [], "cost_usd": "0"}
    candidates = [
        Candidate(member=0, model="pool", message={"role": "assistant", "content": pool_answer}, finish_reason="stop"),
        Candidate(1, "baseline", {"role": "assistant", "content": baseline_answer}, "stop"),
    ]
    seed = hashlib.sha256(f"{item.key}\x00{pool}\x00{baseline}".encode()).digest()
    ballot = make_ballot(candidates, random.Random(int.from_bytes(seed[:8], "big")))
    if len(ballot.by_label) < 2:
        return {
            **base,
            "status": "ok",
            "outcome": "error",
            "reason": "an answer contains the judge's nonce",
            "votes": [],
            "cost_usd": "0",
        }
    votes: list[dict[str, Any]] = [{}, {}]
    costs: list[Decimal | None] = [Decimal(0), Decimal(0)]

    async def ask(b: Ballot) -> ParsedVerdict:
        i = 0 if b is ballot else 1
        first = b.by_label[b.order[0]].model
        body = {
            "model": judge,
            "messages": verdict_messages(item.messages, b, None, MAX_CANDIDATE_CHARS),
            "response_format": verdict_response_format(b.order),
        }
        reply = await client.chat(body)
        costs[i] = reply.cost
        if not reply.ok:
            err = reply.error or {}
            votes[i] = {"first_shown": first, "winner": None, "error": err.get("message", "failed")}
            raise JudgeFailed("upstream_error")
        try:
            parsed = parse_verdict(reply.answer or "", b.order)
        except JudgeFailed as exc:
            votes[i] = {"first_shown": first, "winner": None, "error": f"unusable verdict ({exc.reason})"}
            raise
        votes[i] = {"first_shown": first, "winner": b.by_label[parsed.winner].model}
        return parsed

    results = await both_orders(ask, ballot)
    cost = None if any(c is None for c in costs) else sum((c for c in costs if c is not None), Decimal(0))
    if any(isinstance(r, JudgeFailed) for r in results):
        # a vote the gateway failed to answer is asked again on a rerun; an unusable verdict is not
        failed = any(v.get("error") and not v["error"].startswith("unusable verdict") for v in votes)
        return {**base, "status": "error" if failed else "ok", "outcome": "error", "votes": votes, "cost_usd": cost}
    winners = {v["winner"] for v in votes}
    outcome = "tie" if len(winners) > 1 else ("win" if winners == {"pool"} else "loss")
    return {**base, "status": "ok", "outcome": outcome, "votes": votes, "cost_usd": cost}
