"""Anthropic Messages answer -> OpenAI ``chat.completion``; the pieces the stream translation shares.

- ``text`` blocks are the content; ``tool_use`` blocks are tool calls (input as a JSON string).
- ``thinking`` and ``redacted_thinking`` blocks are not shown: they are reasoning, not the answer. Their
  tokens are in Anthropic's ``output_tokens``, so they are billed as completion tokens.
- With a forced ``response_format`` tool, that tool's input is the content and the finish reason is ``stop``.
- Usage: prompt = input + cache_creation_input + cache_read_input tokens (Anthropic's ``input_tokens``
  counts only the uncached rest), cached = cache_read_input tokens, cache writes = cache_creation_input
  tokens (priced with ``cache_write_input``), completion = output tokens.
"""

from __future__ import annotations

from typing import Any

from gateway.books.usage import Usage
from gateway.providers import translate as t
from gateway.providers.anthropic.request import AnthropicRequest
from gateway.wire import jsonutil
from gateway.wire.anthropic import FINISH_REASONS
from gateway.wire.errors import UpstreamProtocolError


def finish_reason(stop_reason: Any, json_tool: str | None) -> str | None:
    if not isinstance(stop_reason, str):
        return None
    reason = FINISH_REASONS.get(stop_reason, "stop")
    if json_tool is not None and reason == "tool_calls":
        return "stop"  # the forced tool is how the answer was asked for, not a call for the caller to make
    return reason


def usage(data: Any) -> Usage | None:
    """OpenAI usage from an Anthropic ``usage`` object; None unless input and output counts are both there."""
    if not isinstance(data, dict):
        return None
    fresh, output = t.count(data.get("input_tokens")), t.count(data.get("output_tokens"))
    if fresh is None or output is None:
        return None
    written = t.count(data.get("cache_creation_input_tokens")) or 0
    read = t.count(data.get("cache_read_input_tokens")) or 0
    return Usage(
        prompt_tokens=fresh + written + read, completion_tokens=output, cached_tokens=read, cache_write_tokens=written
    )


def to_completion(data: Any, request: AnthropicRequest, model: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamProtocolError(f"upstream '{model}' answered without content")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    json_answer: str | None = None
    for block in data["content"]:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            args = jsonutil.dumps(block.get("input") if isinstance(block.get("input"), dict) else {}).decode()
            if request.json_tool is not None and block.get("name") == request.json_tool:
                json_answer = args
            else:
                calls.append(t.tool_call(str(block.get("id") or t.new_call_id()), str(block.get("name")), args))
        # thinking, redacted_thinking and server-tool blocks are not part of the answer
    if request.json_tool is not None:
        # Text next to a forced tool is commentary; the schema answer alone is the content.
        content: str | None = json_answer if json_answer is not None else "".join(texts)
    else:
        content = "".join(texts) if texts or not calls else None
    finish = finish_reason(data.get("stop_reason"), request.json_tool) or "stop"
    return t.completion(
        id=str(data.get("id") or "msg"),
        model=str(data.get("model") or request.payload.get("model") or ""),
        choices=[t.choice(0, content, calls, finish)],
        usage=usage(data.get("usage")),
    )
