"""merge: the judge writes one answer from all candidates, streamed word by word when the caller streams.

With ``analysis`` the judge first writes a structured comparison of the panel (see
:mod:`fusion_modes.analysis`) and then the answer from it: one more judge call. A comparison that fails
strict parsing does not fail the request: the answer is merged without it, and the failure is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fusion_modes.analysis import analysis_messages, analysis_response_format, final_messages, parse_analysis
from fusion_modes.base import (
    Analysis,
    Candidate,
    FusionContext,
    FusionError,
    FusionMode,
    FusionResult,
    JudgeFailed,
    first_success,
    unjudged,
)
from fusion_modes.judge import Ballot, make_ballot, merge_messages


class Merge(FusionMode):
    name = "merge"

    async def run(self, ctx: FusionContext, candidates: Sequence[Candidate]) -> FusionResult:
        if len(candidates) == 1:
            only = candidates[0]
            return unjudged(ctx, only)
        return await merge(ctx, candidates)


async def merge(ctx: FusionContext, candidates: Sequence[Candidate]) -> FusionResult:
    if ctx.judge is None:
        return first_success(ctx, candidates, "no_judge")
    ballot = make_ballot(candidates, ctx.rng)
    if not ballot.by_label:
        return first_success(ctx, candidates, "no_candidates")
    analysis, analysis_error = await _analyse(ctx, ballot) if ctx.analysis else (None, None)
    messages: list[dict[str, Any]]
    if analysis is not None:
        messages = final_messages(ctx.conversation, ballot, analysis, ctx.criteria, ctx.max_candidate_chars)
    else:
        messages = merge_messages(ctx.conversation, ballot, ctx.criteria, ctx.max_candidate_chars)
    emitted = False
    # A structured answer is checked whole before any of it goes out: never half a JSON document, then prose.
    live = ctx.emit if ctx.check is None else None

    async def on_delta(text: str) -> None:
        nonlocal emitted
        if live is not None and text:
            emitted = True
            await live(text)

    try:
        written = await ctx.judge.write(messages, on_delta)
        if not written.text.strip():
            raise JudgeFailed("empty", "the judge wrote nothing")
        if ctx.check is not None and written.finish_reason != "length":
            problem = ctx.check(written.text)
            if problem is not None:
                raise JudgeFailed(
                    "invalid_output", f"the merged answer breaks the requested response_format: {problem}"
                )
    except JudgeFailed as exc:
        if emitted:
            # Part of the merged answer already reached the caller: a fallback now would splice two answers.
            raise FusionError(f"pool '{ctx.pool}': the judge failed mid-answer ({exc.reason})", exc.reason) from exc
        fallback = first_success(ctx, candidates, exc.reason, exc.detail if exc.reason == "invalid_output" else "")
        fallback.analysis, fallback.analysis_error = analysis, analysis_error
        return fallback
    return FusionResult(
        message={"role": "assistant", "content": written.text, "refusal": None},
        finish_reason=written.finish_reason or "stop",
        streamed=emitted,
        analysis=analysis,
        analysis_error=analysis_error,
    )


async def _analyse(ctx: FusionContext, ballot: Ballot) -> tuple[Analysis | None, str | None]:
    """The judge's comparison of the panel, or why there is none."""
    assert ctx.judge is not None
    messages = analysis_messages(ctx.conversation, ballot, ctx.criteria, ctx.max_candidate_chars)
    try:
        return parse_analysis(await ctx.judge.verdict(messages, analysis_response_format()), ballot), None
    except JudgeFailed as exc:
        return None, exc.reason
