"""Token usage of one upstream call, in OpenAI's terms."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: part of ``prompt_tokens`` served from the upstream's prompt cache
    cached_tokens: int = 0
    #: part of ``completion_tokens`` spent reasoning
    reasoning_tokens: int = 0
    #: part of ``prompt_tokens`` written to the upstream's prompt cache (Anthropic bills these higher)
    cache_write_tokens: int = 0
    #: True when counted by the gateway because the upstream did not say
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            estimated=self.estimated or other.estimated,
        )

    @classmethod
    def from_openai(cls, data: Any) -> Usage | None:
        """Parse an OpenAI ``usage`` object; None when absent or malformed."""
        if not isinstance(data, dict):
            return None
        prompt = _int(data.get("prompt_tokens"))
        completion = _int(data.get("completion_tokens"))
        if prompt is None or completion is None:
            return None
        pd = data.get("prompt_tokens_details")
        cd = data.get("completion_tokens_details")
        cached = min((_int(pd.get("cached_tokens")) if isinstance(pd, dict) else None) or 0, prompt)
        written = (_int(pd.get("cache_write_tokens")) if isinstance(pd, dict) else None) or 0
        reasoning = _int(cd.get("reasoning_tokens")) if isinstance(cd, dict) else None
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached,
            cache_write_tokens=min(written, prompt - cached),
            reasoning_tokens=reasoning or 0,
            estimated=bool(data.get("usage_estimated", False)),
        )

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
        if self.cache_write_tokens:
            # Not an OpenAI field: providers with priced cache writes (Anthropic) report them here.
            out["prompt_tokens_details"]["cache_write_tokens"] = self.cache_write_tokens
        if self.estimated:
            out["usage_estimated"] = True
        return out


def total(usages: Iterable[Usage | None]) -> Usage:
    out = Usage()
    for u in usages:
        if u is not None:
            out = out + u
    return out


def _int(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    return None
