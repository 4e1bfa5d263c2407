"""Chunks -> one assistant message, the way OpenAI's own stream helper assembles them."""

from __future__ import annotations

from typing import Any


class Accumulator:
    """Assembles choice 0 of a chunk stream. Partial results stay readable after a cut or a cancel."""

    __slots__ = (
        "_annotations",
        "_content",
        "_logprobs",
        "_refusal",
        "_tools",
        "finish_reason",
        "role",
        "service_tier",
        "system_fingerprint",
    )

    def __init__(self) -> None:
        self._content: list[str] = []
        self._refusal: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self._annotations: list[Any] = []
        self._logprobs: dict[str, list[Any]] | None = None
        self.finish_reason: str | None = None
        self.role = "assistant"
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None

    def add(self, chunk: dict[str, Any]) -> str:
        """Take one chunk; return the content text it added (for live relays)."""
        added = ""
        if chunk.get("system_fingerprint"):
            self.system_fingerprint = chunk["system_fingerprint"]
        if chunk.get("service_tier"):
            self.service_tier = chunk["service_tier"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            if choice.get("logprobs"):
                self._add_logprobs(choice["logprobs"])
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._content.append(text)
                added += text
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._refusal.append(refusal)
            for tc in delta.get("tool_calls") or ():
                self._tool_delta(tc)
            if delta.get("annotations"):
                self._annotations.extend(delta["annotations"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return added

    def _add_logprobs(self, logprobs: dict[str, Any]) -> None:
        if self._logprobs is None:
            self._logprobs = {}
        for key in ("content", "refusal"):
            part = logprobs.get(key)
            if isinstance(part, list):
                self._logprobs.setdefault(key, []).extend(part)

    @property
    def logprobs(self) -> dict[str, Any] | None:
        """Choice 0's token log probabilities as the upstream sent them (None when it sent none)."""
        if self._logprobs is None:
            return None
        return {"content": self._logprobs.get("content"), "refusal": self._logprobs.get("refusal")}

    def _tool_delta(self, tc: dict[str, Any]) -> None:
        idx = tc.get("index", len(self._tools))
        slot = self._tools.setdefault(idx, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        for key, value in tc.items():
            if key == "function":
                fn = value or {}
                if fn.get("name"):
                    slot["function"]["name"] += fn["name"]
                if fn.get("arguments"):
                    slot["function"]["arguments"] += fn["arguments"]
            elif key in ("id", "type"):
                if value:
                    slot[key] = value
            elif key != "index":
                # Provider extras (e.g. Gemini's thought signature) must survive, or a later turn breaks.
                slot[key] = value

    @property
    def content(self) -> str:
        return "".join(self._content)

    def produced_text(self) -> str:
        """Everything generated so far, for estimating tokens when the upstream gave no usage."""
        parts = [self.content, "".join(self._refusal)]
        for tc in self._tools.values():
            parts.append(tc["function"]["name"])
            parts.append(tc["function"]["arguments"])
        return "".join(parts)

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "role": self.role,
            "content": self.content if self._content or not self._tools else None,
            "refusal": "".join(self._refusal) if self._refusal else None,
        }
        if self._tools:
            msg["tool_calls"] = [self._tools[i] for i in sorted(self._tools)]
        if self._annotations:
            msg["annotations"] = list(self._annotations)
        return msg
