"""Asking a judge in both presentation orders, and pairwise preference built on it.

Position bias is real (a judge kept its verdict under an order swap only ~65% of the time in the
MT-Bench study), so where it matters the judge sees the candidates as shown and reversed. Best-of's
``swap``, the live baseline comparison and the offline ``compare`` report all ask through
:func:`both_orders`; each applies its own rule to the two answers.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import anyio

from fusion_modes.base import Candidate, Judge, JudgeFailed
from fusion_modes.judge import (
    Ballot,
    ParsedVerdict,
    make_ballot,
    parse_verdict,
    verdict_messages,
    verdict_response_format,
)

Preference = Literal["first", "second", "tie"]
#: one judgement of one presentation order
Ask = Callable[[Ballot], Awaitable[ParsedVerdict]]


async def both_orders(ask: Ask, ballot: Ballot) -> tuple[ParsedVerdict | JudgeFailed, ParsedVerdict | JudgeFailed]:
    """The verdicts on ``ballot`` as shown and reversed, asked concurrently; a failed one is its error."""
    results: list[ParsedVerdict | JudgeFailed] = [JudgeFailed("cancelled"), JudgeFailed("cancelled")]

    async def one(i: int, b: Ballot) -> None:
        try:
            results[i] = await ask(b)
        except JudgeFailed as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, 0, ballot)
        tg.start_soon(one, 1, ballot.reversed())
    return results[0], results[1]


def asker(judge: Judge, conversation: Sequence[dict[str, Any]], criteria: str | None, max_chars: int) -> Ask:
    """One structured verdict from ``judge`` per ballot, strictly parsed."""

    async def ask(ballot: Ballot) -> ParsedVerdict:
        messages = verdict_messages(conversation, ballot, criteria, max_chars)
        raw = await judge.verdict(messages, verdict_response_format(ballot.order))
        return parse_verdict(raw, ballot.order)

    return ask


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
    """Which of two answers is better: agreement of both orders gives a winner, disagreement a tie.

    Raises :class:`JudgeFailed` if either judgement fails: half a comparison is not a result."""
    ballot = make_ballot([first, second], rng)
    if len(ballot.by_label) < 2:
        raise JudgeFailed("no_candidates", "an answer carried the nonce")
    picks = []
    for verdict in await both_orders(asker(judge, conversation, criteria, max_chars), ballot):
        if isinstance(verdict, JudgeFailed):
            raise verdict
        picks.append(ballot.by_label[verdict.winner])
    if picks[0] is not picks[1]:
        return "tie"
    return "first" if picks[0] is first else "second"
