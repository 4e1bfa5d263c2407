"""Anthropic Messages <-> OpenAI Chat Completions: the one set of mappings, used both ways.

The native provider (:mod:`gateway.providers.anthropic`) reads them from Anthropic to OpenAI (an upstream's
answer), the inbound ``POST /v1/messages`` route (:mod:`gateway.wire.messages`) from OpenAI to Anthropic
(the gateway's answer). A mapping is written once, here, and its inverse is derived from it.
"""

from __future__ import annotations

from typing import Any

#: Anthropic ``stop_reason`` -> OpenAI ``finish_reason``
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # the upstream paused a long server-tool turn; nothing in OpenAI's set means "continue me"
    "pause_turn": "stop",
}
#: OpenAI ``finish_reason`` -> Anthropic ``stop_reason``: the first Anthropic reason that maps to it
STOP_REASONS = {openai: anthropic for anthropic, openai in reversed(FINISH_REASONS.items())}

#: Anthropic error ``type`` -> the HTTP status it stands for
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_ERROR_TYPES = {status: kind for kind, status in ERROR_STATUS.items()}

#: image types the Messages API accepts
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

#: OpenAI ``tool_choice`` strings -> Anthropic ``tool_choice`` types
TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
#: Anthropic ``tool_choice`` types -> OpenAI ``tool_choice`` strings (``tool`` names one function)
OPENAI_TOOL_CHOICES = {anthropic: openai for openai, anthropic in TOOL_CHOICES.items()}


def error_type(status: int) -> str:
    """The Anthropic error ``type`` for an HTTP status (a 5xx without its own type is ``api_error``)."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def image_source(data_url_mime: str | None, data: str | None, url: str | None) -> dict[str, Any]:
    """An image block's ``source``: base64 data with its media type, or a URL."""
    if url is not None:
        return {"type": "url", "url": url}
    return {"type": "base64", "media_type": data_url_mime, "data": data}


def usage_counts(prompt: int, completion: int, cached: int, cache_write: int) -> dict[str, int]:
    """OpenAI token counts -> an Anthropic ``usage`` object, whose ``input_tokens`` counts only the uncached
    rest of the prompt (:func:`gateway.providers.anthropic.response.usage` is the inverse)."""
    return {
        "input_tokens": max(0, prompt - cached - cache_write),
        "output_tokens": completion,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cached,
    }
