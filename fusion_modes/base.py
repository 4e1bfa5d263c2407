"""What a fusion mode is handed and what it returns. Modes never touch HTTP: the judge and, for debate,
the members are callables the pipeline provides."""

from __future__ import annotations

import abc
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import orjson

JudgeStatus = Literal["ok", "fallback", "skipped", "error"]
#: every mode's name, declared once: the config, the per-request override and the registry use these
ModeName = Literal["best-of", "merge", "debate"]
#: how a debate ends
FinalMode = Literal["best-of", "merge"]


def content_text(content: Any) -> str:
    """A message's text: the string, or the text parts of a content array (images are not shown).

    The gateway has the same reading in ``gateway.wire.protocol``; this package imports nothing of the
    gateway, so it keeps its own three lines rather than depend on the HTTP side."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class JudgeFailed(Exception):
    """The judge gave no usable answer: an upstream error, a timeout, or a verdict that failed strict parsing.

    ``reason`` is a short, bounded label (``timeout``, ``upstream_error``, ``not_json``, ``unknown_label``,
    ``extra_keys`` ...) used in metadata and metrics.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FusionError(Exception):
    """The pool cannot produce an answer in this mode (judge failed with ``fallback: error``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Candidate:
    """One member's successful answer."""

    member: int  # position in the pool's member list
    model: str
    message: dict[str, Any]
    finish_reason: str | None
    #: what the member sent beside its message, returned as sent when this answer is the caller's
    logprobs: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None

    @property
    def text(self) -> str:
        """What a judge reads: the content, or the tool calls written out."""
        content = self.message.get("content")
        text = content if isinstance(content, str) else ""
        calls = self.message.get("tool_calls")
        if calls:
            rendered = [
                {
                    "function": (c.get("function") or {}).get("name"),
                    "arguments": (c.get("function") or {}).get("arguments"),
                }
                for c in calls
            ]
            text = (text + "\n" if text else "") + "Tool calls: " + orjson.dumps(rendered).decode()
        refusal = self.message.get("refusal")
        if not text and isinstance(refusal, str):
            text = "Refusal: " + refusal
        return text


@dataclass(frozen=True, slots=True)
class Written:
    """What the judge wrote: the text, and why it stopped (``length`` when the caller's limit cut it)."""

    text: str
    finish_reason: str | None = "stop"


OutputCheck = Callable[[str], "str | None"]
"""The caller's output contract as a check: answer text -> what is wrong with it, or None."""


class Judge(Protocol):
    """The pool's judge model, as the modes see it."""

    async def verdict(self, messages: list[dict[str, Any]], response_format: dict[str, Any]) -> str:
        """Ask for a structured verdict; returns the raw text. Raises JudgeFailed."""
        ...

    async def write(self, messages: list[dict[str, Any]], on_delta: Callable[[str], Awaitable[None]]) -> Written:
        """Ask for the caller's answer (under the caller's output contract), passing each piece to
        ``on_delta`` as it arrives. Raises JudgeFailed."""
        ...


Reviser = Callable[[int, Sequence[Candidate]], Awaitable[list[Candidate]]]
"""Debate: (round number, latest answers) -> the members' revised answers."""

Emit = Callable[[str], Awaitable[None]]


@dataclass
class FusionContext:
    pool: str
    conversation: list[dict[str, Any]]
    judge: Judge | None
    criteria: str | None
    fallback: Literal["first-success", "error"]
    rng: random.Random
    max_candidate_chars: int = 16_000
    swap: bool = False
    #: debate
    rounds: int = 0
    final: FinalMode = "best-of"
    reviser: Reviser | None = None
    #: merge streams the judge's words here when the caller streams
    emit: Emit | None = None
    #: pool member order, for position-independent tie-breaks
    member_order: Sequence[str] = ()
    #: the caller's structured-output contract; an answer that fails it is never returned
    check: OutputCheck | None = None
    #: merge: the judge compares the panel first, then writes the answer from that comparison
    analysis: bool = False


@dataclass
class Verdict:
    winner: Candidate
    analysis: str
    #: False when the order-swapped judgement disagreed
    consistent: bool = True
    labels: dict[str, Candidate] = field(default_factory=dict)  # label -> candidate, for the record


#: the sections of a merge's comparison of the panel, in the order they are asked for and reported
ANALYSIS_SECTIONS: tuple[str, ...] = ("consensus", "contradictions", "coverage_gaps", "unique_insights", "blind_spots")


@dataclass(frozen=True, slots=True)
class Analysis:
    """The judge's comparison of the panel (a merge that shows its work), section by section."""

    consensus: tuple[str, ...]
    contradictions: tuple[str, ...]
    coverage_gaps: tuple[str, ...]
    unique_insights: tuple[str, ...]
    blind_spots: tuple[str, ...]
    #: label -> candidate: the entries speak of anonymous labels
    labels: dict[str, Candidate]

    def sections(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in ANALYSIS_SECTIONS}


@dataclass
class RoundRecord:
    round: int
    answers: int
    agreed: bool
    latency_ms: float = 0.0


@dataclass
class FusionResult:
    message: dict[str, Any]
    finish_reason: str | None
    winner: Candidate | None = None
    verdict: Verdict | None = None
    judge_status: JudgeStatus = "ok"
    fallback_reason: str | None = None
    #: the content already went out through ``emit``
    streamed: bool = False
    rounds: list[RoundRecord] = field(default_factory=list)
    #: merge with ``analysis``: the judge's comparison of the panel (None when not asked for, or it failed)
    analysis: Analysis | None = None
    #: why the comparison failed (the answer was then merged without it)
    analysis_error: str | None = None


class FusionMode(abc.ABC):
    name: ClassVar[ModeName]

    @abc.abstractmethod
    async def run(self, ctx: FusionContext, candidates: Sequence[Candidate]) -> FusionResult:
        """Combine the candidates (in the order they finished) into one answer."""


def honours(ctx: FusionContext, candidate: Candidate) -> bool:
    """Does this answer keep the caller's output contract? (An answer cut by the caller's own token
    limit is the caller's to handle, as upstream.)"""
    if ctx.check is None or candidate.finish_reason == "length" or candidate.message.get("tool_calls"):
        return True
    content = candidate.message.get("content")
    return ctx.check(content if isinstance(content, str) else "") is None


def unjudged(ctx: FusionContext, only: Candidate) -> FusionResult:
    """No judge needed (one answer, or every member agrees): that answer, if it keeps the caller's contract."""
    if not honours(ctx, only):
        raise FusionError(
            f"pool '{ctx.pool}': the members' answer does not match the requested response_format", "invalid_output"
        )
    return FusionResult(only.message, only.finish_reason, winner=only, judge_status="skipped")


def first_success(
    ctx: FusionContext, candidates: Sequence[Candidate], reason: str, detail: str = ""
) -> FusionResult:
    """The judge failed: apply the pool's fallback rule (first member to answer within the contract)."""
    why = f"{reason}: {detail}" if detail else reason
    if ctx.fallback == "error" or not candidates:
        raise FusionError(f"pool '{ctx.pool}': the judge failed ({why}) and fallback is 'error'", reason)
    kept = [c for c in candidates if honours(ctx, c)]
    if not kept:
        raise FusionError(
            f"pool '{ctx.pool}': the judge failed ({why}) and no member's answer matches the requested "
            "response_format",
            reason,
        )
    first = kept[0]  # candidates arrive in finishing order
    return FusionResult(
        message=first.message,
        finish_reason=first.finish_reason,
        winner=first,
        judge_status="fallback",
        fallback_reason=reason,
    )
