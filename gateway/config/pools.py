"""``pools:``: a pool's mode, members, judge, and what each mode may be told."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from fusion_modes.agreement import ComparisonName
from fusion_modes.base import FinalMode, ModeName
from fusion_modes.criteria import CRITERIA_PRESETS, is_preset_name
from gateway.config.base import PositiveSeconds, Strict, Usd
from gateway.config.suggest import unknown


def unknown_criteria_preset(name: str) -> str:
    return unknown("criteria preset", name, CRITERIA_PRESETS) + "; criteria of your own are a sentence"


class JudgeConfig(Strict):
    model: str
    #: a preset's name (see :mod:`fusion_modes.criteria`) or a sentence of the operator's own
    criteria: str | None = None
    #: best-of: also judge with the candidates in reversed order
    swap: bool = False
    timeout_s: PositiveSeconds = 30.0
    #: candidates longer than this are cut (with a marker) before the judge sees them
    max_candidate_chars: int = Field(16_000, ge=100)
    #: how the verdict is asked for: a JSON schema (OpenAI, vLLM, Ollama ...), plain JSON mode, or the prompt only
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    #: extra request fields for judge calls, e.g. {temperature: 0}
    params: dict[str, Any] = {}

    @field_validator("criteria")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and is_preset_name(v) and v not in CRITERIA_PRESETS:
            raise ValueError(unknown_criteria_preset(v))
        return v


class DebateConfig(Strict):
    rounds: int = Field(2, ge=0, le=6)
    final: FinalMode = "best-of"


class MergeConfig(Strict):
    """How a pool merges (mode: merge, debate's ``final: merge``, or ``fusion.mode: merge`` per request)."""

    #: the judge first writes a structured comparison of the panel, then the answer from it (one more call)
    analysis: bool = False


class BaselineConfig(Strict):
    model: str
    sample_rate: float = Field(0.1, ge=0, le=1)
    compare: Literal["judge", "none"] = "judge"
    compare_judge: str | None = None


Compare = ComparisonName


class AgreementConfig(Strict):
    """Consensus: once ``min`` members give equivalent answers, answer with it, skip the judge and cancel
    the members still running. ``compare`` names the equivalence (see :mod:`fusion_modes.agreement`)."""

    compare: Compare = "normalized"
    min: int = Field(2, ge=2)


class CascadeCheck(Strict):
    """When a cascade accepts its first model's answer. Every check given must pass; cheapest first."""

    #: the answer must validate against the request's ``response_format`` (a JSON schema, or JSON at all)
    response_format: bool = False
    #: the answer must match this pattern (``re.search``)
    regex: str | None = None
    #: a second model (or the first one again, for a second sample) must give an equivalent answer
    agree_with: str | None = None
    compare: Compare = "normalized"
    #: a judge rates the answer; below ``min_confidence`` it escalates
    judge: str | None = None
    min_confidence: float = Field(0.8, ge=0, le=1)

    @field_validator("regex")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _something(self) -> CascadeCheck:
        if not (self.response_format or self.regex or self.agree_with or self.judge):
            raise ValueError("give at least one of response_format, regex, agree_with, judge")
        if self.compare == "judge" and self.agree_with and not self.judge:
            raise ValueError("compare: judge needs a judge")
        return self


#: a pool's mode: a fusion mode, or a cascade (which routes between a model and a pool and fuses nothing)
Mode = ModeName | Literal["cascade"]


class PoolConfig(Strict):
    mode: Mode
    #: every mode but cascade: 1 to 8 model names
    members: list[str] = Field(default_factory=list, max_length=8)
    judge: JudgeConfig | None = None
    fallback: Literal["first-success", "error"] = "first-success"
    timeout_s: PositiveSeconds = 30.0
    deadline_s: PositiveSeconds = 60.0
    #: successful members needed before judging; default: all members
    quorum: int | None = Field(None, ge=1)
    #: a quorum miss fails the request instead of judging what did answer
    require_quorum: bool = False
    #: once quorum is met, wait this long for the rest, then cancel them; default: until timeout_s
    grace_ms: float | None = Field(None, ge=0)
    debate: DebateConfig | None = None
    merge: MergeConfig | None = None
    agreement: AgreementConfig | None = None
    #: cascade: this model answers first; ``check`` decides whether its answer stands or ``escalate`` (a pool) runs
    first: str | None = None
    check: CascadeCheck | None = None
    escalate: str | None = None
    baseline: BaselineConfig | None = None
    max_tokens_cap: int | None = Field(None, ge=1)
    max_tokens_policy: Literal["clamp", "reject"] = "clamp"
    max_cost_usd: Usd | None = None

    @property
    def effective_quorum(self) -> int:
        return self.quorum if self.quorum is not None else len(self.members)
