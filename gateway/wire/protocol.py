"""OpenAI Chat Completions on the wire: request checks, response and chunk shapes.

The hot path never builds pydantic models of the request: it parses once with orjson, checks what the
gateway relies on (with the offending ``param`` in the error, as OpenAI does), and passes every other
field through untouched.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from gateway.wire import jsonutil
from gateway.wire.errors import InvalidRequest
from gateway.wire.fields import FIELDS, MESSAGE_FIELDS

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

#: Fields that would let a caller redirect upstream traffic or credentials. Refused at any depth,
#: except inside JSON schemas the caller wrote (a tool may well have a parameter called api_key).
#: Matched after :func:`normalise_key`, so ``API_KEY``, ``apiKey``, ``api-key`` and ``ApiKey`` are one name.
FORBIDDEN_KEYS = frozenset(
    {"apibase", "baseurl", "apikey", "extraheaders", "headers", "defaultheaders", "extraquery", "defaultquery"}
)
_SCHEMA_KEYS = frozenset({"parameters", "schema", "json_schema"})
#: Keys seen in nearly every request, known not to be forbidden: the walk skips normalising them.
_PLAIN_KEYS = frozenset({"model", "messages", "role", "content", "type", "text", "name", "id", "arguments",
                         "image_url", "url", "detail", "description", "tool_call_id", *FIELDS, *MESSAGE_FIELDS})

#: Deepest nesting accepted. orjson writes at most 254 levels, and a pool or a translating provider
#: wraps the caller's values a few levels deeper still; real requests stay far below this.
MAX_DEPTH = 128


@dataclass(slots=True)
class ChatRequest:
    """A checked chat completion request. ``body`` is what the caller sent, minus ``fusion``."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    fusion: dict[str, Any] | None

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.body["messages"]
        return messages


def parse_chat_request(raw: bytes, *, max_messages: int) -> ChatRequest:
    return check_chat_request(decode_object(raw), max_messages=max_messages)


def decode_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    try:
        body = jsonutil.loads(raw)
    except jsonutil.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_type")
    return body


def check_chat_request(body: dict[str, Any], *, max_messages: int) -> ChatRequest:
    """Check a decoded chat completions body (also the ones other inbound APIs translate into)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing_or_type("model", model, "a non-empty string")
    _check_messages(body.get("messages"), max_messages)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _type("stream", "a boolean")
    include_usage = False
    opts = body.get("stream_options")
    if opts is not None:
        if not isinstance(opts, dict):
            raise _type("stream_options", "an object")
        iu = opts.get("include_usage", False)
        if not isinstance(iu, bool):
            raise _type("stream_options.include_usage", "a boolean")
        include_usage = iu and stream
    for key, value in body.items():
        shape = FIELDS.get(key)
        if shape is not None and value is not None and not shape.fits(value):
            shape.check(value, key)
    for key in ("n", "max_tokens", "max_completion_tokens"):
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InvalidRequest(f"'{key}' must be an integer >= 1", param=key, code="invalid_value")
    if _needs_refusal(body, 1):
        _check_forbidden(body, "", 1)  # the same walk again, this time saying where
    fusion = body.pop("fusion", None)
    if fusion is not None and not isinstance(fusion, dict):
        raise _type("fusion", "an object")
    return ChatRequest(body=body, model=model, stream=stream, include_usage=include_usage, fusion=fusion)


def _check_messages(messages: Any, max_messages: int) -> None:
    if not isinstance(messages, list) or not messages:
        if messages is None:
            raise InvalidRequest("'messages' is a required property", param="messages", code="missing_required")
        raise InvalidRequest("'messages' must be a non-empty array", param="messages", code="invalid_type")
    if len(messages) > max_messages:
        raise InvalidRequest(
            f"too many messages: {len(messages)} (limit {max_messages})", param="messages", code="too_many_messages"
        )
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _type(where, "an object")
        role = msg.get("role")
        if not isinstance(role, str):
            raise _missing_or_type(f"{where}.role", role, "a string")
        if role not in ROLES:
            raise InvalidRequest(
                f"'{where}.role' must be one of {', '.join(sorted(ROLES))}; got '{role}'",
                param=f"{where}.role",
                code="invalid_value",
            )
        for key, value in msg.items():
            shape = MESSAGE_FIELDS.get(key)
            if shape is not None and value is not None and not shape.fits(value):
                shape.check(value, f"{where}.{key}")
        content = msg.get("content")
        if content is None and role in ("user", "system", "developer"):
            raise InvalidRequest(
                f"'{where}.content' is required for role '{role}'", param=f"{where}.content", code="missing_required"
            )


def normalise_key(key: str) -> str:
    """``API_KEY``, ``apiKey``, ``api-key``, ``Api_Key`` -> ``apikey``: how forbidden names are compared."""
    return key.lower().replace("_", "").replace("-", "")


def _needs_refusal(node: Any, depth: int) -> bool:
    """The fast walk over every request: is there a redirect field or too deep a value anywhere?
    It builds no paths; :func:`_check_forbidden` walks again to name the place when there is."""
    if depth > MAX_DEPTH:
        return True
    if type(node) is dict:
        for key, value in node.items():
            if key not in _PLAIN_KEYS and normalise_key(key) in FORBIDDEN_KEYS:
                return True
            t = type(value)
            if t is dict or t is list:
                if key in _SCHEMA_KEYS:
                    if _deeper_than(value, MAX_DEPTH - depth):
                        return True
                elif _needs_refusal(value, depth + 1):
                    return True
        return False
    for item in node:
        t = type(item)
        if (t is dict or t is list) and _needs_refusal(item, depth + 1):
            return True
    return False


def _check_forbidden(node: Any, path: str, depth: int) -> None:
    """Refuse redirect fields at any depth, and nesting deeper than the gateway can forward."""
    if depth > MAX_DEPTH:
        raise _too_deep(path)
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in _PLAIN_KEYS and normalise_key(key) in FORBIDDEN_KEYS:
                p = f"{path}.{key}" if path else key
                raise InvalidRequest(
                    f"'{p}' is not accepted: upstream endpoints and credentials are set by the gateway's config",
                    param=p,
                    code="forbidden_parameter",
                )
            if isinstance(value, str):
                continue
            if key in _SCHEMA_KEYS:
                if _deeper_than(value, MAX_DEPTH - depth):
                    raise _too_deep(f"{path}.{key}" if path else key)
                continue
            _check_forbidden(value, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict | list):
                _check_forbidden(item, f"{path}[{i}]", depth + 1)


def _deeper_than(node: Any, levels: int) -> bool:
    if not isinstance(node, dict | list):
        return False
    if levels <= 0:
        return True
    children = node.values() if isinstance(node, dict) else node
    return any(_deeper_than(child, levels - 1) for child in children)


def _too_deep(path: str) -> InvalidRequest:
    field = path.split(".", 1)[0].split("[", 1)[0]  # the top-level field: the full path is as deep as the value
    return InvalidRequest(
        f"'{field}' is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects are accepted",
        param=field or None,
        code="nesting_too_deep",
    )


def _type(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' must be {what}", param=param, code="invalid_type")


def _missing_or_type(param: str, value: Any, what: str) -> InvalidRequest:
    if value is None:
        return InvalidRequest(f"'{param}' is a required property", param=param, code="missing_required")
    return _type(param, what)


# --------------------------------------------------------------------------- responses


def content_text(content: Any) -> str:
    """A message's text: the string, or the text parts of a content array (images are not text)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def now_s() -> int:
    return int(time.time())


def completion(
    *,
    id: str,
    created: int,
    model: str,
    message: dict[str, Any],
    finish_reason: str | None,
    usage: dict[str, Any] | None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": logprobs}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    with_usage: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` gives the empty-choices shape of the usage chunk.
    ``with_usage``: the caller asked for usage, so every chunk carries ``usage: null`` until the last."""
    choices: list[dict[str, Any]] = (
        [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    )
    out = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if with_usage:
        out["usage"] = None
    return out
