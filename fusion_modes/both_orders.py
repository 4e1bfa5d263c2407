"""Pairwise preference: which of two answers is better, asked in both orders.

Used to compare a pool's fused answer with a baseline model's. Position bias is real (a judge kept its
verdict under an order swap only ~65% of the time in the MT-Bench study), so the judge sees both orders:
agreement gives a winner, disagreement is a tie.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

import anyio

from fusion_modes.base import Candidate, Judge, JudgeFailed
from fusion_modes.judge import Ballot, make_ballot, parse_verdict, verdict_messages, verdict_response_format

Preference = Literal["first", "second", "tie"]


async def prefer(
    judge: Judge,
    conversation: Sequence[dict[str, Any]],
    first: Candidate,
    second: Candidate,
    rng: random.Random,
    *,
    criteria: str | None = None,
    max_chars: int = 16_000,
) -> Preference:
    """Raises :class:`JudgeFailed` if either judgement fails: half a comparison is not a result."""
    ballot = make_ballot([first, second], rng)
    if len(ballot.by_label) < 2:
        raise JudgeFailed("no_candidates", "an answer carried the nonce")
    picks: list[Candidate | JudgeFailed] = [JudgeFailed("cancelled"), JudgeFailed("cancelled")]

    async def one(i: int, b: Ballot) -> None:
        messages = verdict_messages(conversation, b, criteria, max_chars)
        try:
            raw = await judge.verdict(messages, verdict_response_format(b.order))
            picks[i] = b.by_label[parse_verdict(raw, b.order).winner]
        except JudgeFailed as exc:
            picks[i] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, ballot)
        tg.start_soon(one, 1, ballot.reversed())
    for p in picks:
        if isinstance(p, JudgeFailed):
            raise p
    if picks[0] is not picks[1]:
        return "tie"
    return "first" if picks[0] is first else "second"
