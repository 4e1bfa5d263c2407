"""Gemini ``GenerateContentResponse`` -> OpenAI ``chat.completion``; the pieces the stream translation shares.

- Each candidate is a choice. Its ``text`` parts are the content; ``functionCall`` parts are tool calls (Gemini
  gives no call ids, so the gateway makes them; a ``thoughtSignature`` rides along in the call's
  ``extra_content.google.thought_signature``). Thought parts (``thought: true``) are not shown.
- Finish reasons: STOP -> stop (tool_calls when the candidate called a function), MAX_TOKENS -> length,
  SAFETY/RECITATION/BLOCKLIST/PROHIBITED_CONTENT/SPII/IMAGE_SAFETY -> content_filter, anything else -> stop.
  A prompt blocked outright (``promptFeedback.blockReason``, no candidates) is an empty answer with
  finish reason content_filter.
- Usage: prompt = promptTokenCount (+ toolUsePromptTokenCount), cached = cachedContentTokenCount,
  completion = candidatesTokenCount + thoughtsTokenCount, reasoning = thoughtsTokenCount: Gemini bills
  thinking as output, so cost stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.books.usage import Usage
from gateway.providers import translate as t
from gateway.providers.transport import status_error
from gateway.wire import jsonutil
from gateway.wire.errors import UpstreamProtocolError, UpstreamStatusError

_FILTERED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"})

#: google.rpc status -> the HTTP status it stands for; Google's error bodies name it in ``error.status``
ERROR_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def finish_reason(reason: Any, called: bool) -> str | None:
    if not isinstance(reason, str) or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called else "stop"


def usage(meta: Any) -> Usage | None:
    """OpenAI usage from ``usageMetadata``; None when the upstream gave none."""
    if not isinstance(meta, dict):
        return None
    prompt = t.count(meta.get("promptTokenCount"))
    if prompt is None:
        return None
    prompt += t.count(meta.get("toolUsePromptTokenCount")) or 0
    thoughts = t.count(meta.get("thoughtsTokenCount")) or 0
    output = (t.count(meta.get("candidatesTokenCount")) or 0) + thoughts
    cached = min(t.count(meta.get("cachedContentTokenCount")) or 0, prompt)
    return Usage(prompt_tokens=prompt, completion_tokens=output, cached_tokens=cached, reasoning_tokens=thoughts)


def error(model: str, status: int, raw: bytes, headers: Any, secrets: tuple[str, ...]) -> UpstreamStatusError:
    """The error for a Gemini error body: its ``error.status`` decides (RESOURCE_EXHAUSTED is a 429 whatever
    the HTTP status said)."""
    try:
        data = jsonutil.loads(raw)
    except jsonutil.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]  # Google APIs sometimes wrap the error in an array
        raw = jsonutil.dumps(data)
    err = data.get("error") if isinstance(data, dict) else None
    named = ERROR_STATUS.get(str(err.get("status"))) if isinstance(err, dict) else None
    return status_error(model, named or status, raw, headers, secrets)


@dataclass
class Parts:
    """What one candidate's parts say, in OpenAI terms."""

    text: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def read_parts(candidate: dict[str, Any]) -> Parts:
    out = Parts()
    content = candidate.get("content")
    for part in (content.get("parts") if isinstance(content, dict) else None) or ():
        if not isinstance(part, dict) or part.get("thought") is True:
            continue  # thought summaries are reasoning, not the answer
        if isinstance(part.get("text"), str):
            out.text.append(part["text"])
        call = part.get("functionCall")
        if isinstance(call, dict):
            args = jsonutil.dumps(call.get("args") if isinstance(call.get("args"), dict) else {}).decode()
            tc = t.tool_call(str(call.get("id") or t.new_call_id()), str(call.get("name")), args)
            if isinstance(part.get("thoughtSignature"), str):
                tc["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            out.calls.append(tc)
        # inlineData, executableCode ...: output kinds a chat completion cannot carry
    return out


def candidates(data: dict[str, Any]) -> list[dict[str, Any]]:
    found = data.get("candidates")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def blocked(data: dict[str, Any]) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def to_completion(data: Any, model: str, upstream: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"upstream '{model}' answered with something that is not an object")
    choices = []
    for i, cand in enumerate(candidates(data)):
        parts = read_parts(cand)
        content = "".join(parts.text) if parts.text or not parts.calls else None
        reason = finish_reason(cand.get("finishReason"), bool(parts.calls)) or "stop"
        choices.append(t.choice(_index(cand, i), content, parts.calls, reason))
    if not choices:
        if not blocked(data):
            raise UpstreamProtocolError(f"upstream '{model}' answered without candidates")
        choices = [t.choice(0, "", [], "content_filter")]
    return t.completion(
        id=str(data.get("responseId") or "gemini"),
        model=str(data.get("modelVersion") or upstream),
        choices=sorted(choices, key=lambda c: c["index"]),
        usage=usage(data.get("usageMetadata")),
    )


def _index(candidate: dict[str, Any], default: int) -> int:
    index = candidate.get("index")
    return index if isinstance(index, int) and index >= 0 else default
