"""Anthropic Messages inbound (``POST /v1/messages``): the request read into a chat completions body, the
answer written back as a Messages response or its stream events.

The mappings are the native Anthropic provider's, run the other way (:mod:`gateway.wire.anthropic`).
Thinking blocks in the history are dropped (they are the model's reasoning, not the conversation);
``thinking``, server tools (``web_search``, ``bash`` ...), document blocks and unknown fields are a 400.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.wire import jsonutil
from gateway.wire.anthropic import IMAGE_TYPES, OPENAI_TOOL_CHOICES, STOP_REASONS, error_type, usage_counts
from gateway.wire.errors import GatewayError, InvalidRequest
from gateway.wire.protocol import ChatRequest, check_chat_request, decode_object

_KNOWN = frozenset(
    {"model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p", "top_k", "tools",
     "tool_choice", "stream", "metadata", "fusion", "service_tier"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    model: str
    stop_sequences: tuple[str, ...] = ()


def parse_messages_request(raw: bytes, *, max_messages: int) -> tuple[ChatRequest, MessagesRequest]:
    body = decode_object(raw)
    for key in body:
        if key not in _KNOWN:
            raise _unsupported(key, "the gateway does not serve this field, and ignoring it could change the answer")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is a required property", param="model", code="missing_required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("'max_tokens' must be an integer >= 1", param="max_tokens", code="invalid_value")
    chat: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    system = _system(body.get("system"))
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages", code="invalid_type")
    chat["messages"] = ([{"role": "system", "content": system}] if system else []) + [
        m for i, msg in enumerate(raw_messages) for m in _message(msg, f"messages[{i}]")
    ]
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("'stop_sequences' must be an array of strings", param="stop_sequences",
                                 code="invalid_type")
        if stops:
            chat["stop"] = stops
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            chat[key] = body[key]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    _tools(body, chat)
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta reports the usage
    if body.get("fusion") is not None:
        chat["fusion"] = body["fusion"]
    req = check_chat_request(chat, max_messages=max_messages)
    return req, MessagesRequest(model=model, stop_sequences=tuple(stops or ()))


def _system(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        return "\n\n".join(_text_block(b, f"system[{i}]") for i, b in enumerate(value))
    raise InvalidRequest("'system' must be a string or an array of text blocks", param="system", code="invalid_type")


def _text_block(block: Any, where: str) -> str:
    if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
        return str(block["text"])
    raise _unsupported(f"{where}.type", "only text blocks are served here")


def _message(msg: Any, where: str) -> Iterator[dict[str, Any]]:
    if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
        raise InvalidRequest(f"'{where}.role' must be one of assistant, user", param=f"{where}.role",
                             code="invalid_value")
    role, content = msg["role"], msg.get("content")
    if isinstance(content, str):
        yield {"role": role, "content": content}
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of content blocks",
                             param=f"{where}.content", code="invalid_type")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _text_block(block, at)})
        elif kind == "image" and role == "user":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, at)}})
        elif kind == "tool_use" and role == "assistant":
            assert isinstance(block, dict)
            calls.append({"id": str(block.get("id")), "type": "function", "function": {
                "name": str(block.get("name")), "arguments": jsonutil.dumps(block.get("input") or {}).decode()}})
        elif kind == "tool_result" and role == "user":
            assert isinstance(block, dict)
            # A tool result is a message of its own in chat completions, answering the call before the text.
            yield {"role": "tool", "tool_call_id": str(block.get("tool_use_id")),
                   "content": _tool_result_text(block.get("content"), f"{at}.content")}
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue
        else:
            raise _unsupported(f"{at}.type", f"'{kind}' blocks are not served in a '{role}' message")
    if role == "assistant":
        if parts or calls:
            out: dict[str, Any] = {"role": "assistant", "content": "".join(p["text"] for p in parts) or None}
            if calls:
                out["tool_calls"] = calls
            yield out
    elif parts:
        yield {"role": "user", "content": parts}


def _image_url(block: dict[str, Any], where: str) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return str(source["url"])
    if kind == "base64" and isinstance(source, dict) and source.get("media_type") in IMAGE_TYPES:
        return f"data:{source['media_type']};base64,{source.get('data')}"
    raise _unsupported(f"{where}.source", "an image must be base64 data of a supported type or a URL")


def _tool_result_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(_text_block(b, f"{where}[{i}]") for i, b in enumerate(content))
    raise InvalidRequest(f"'{where}' must be a string or an array of text blocks", param=where, code="invalid_type")


def _tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise InvalidRequest("'tools' must be an array", param="tools", code="invalid_type")
        out = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type", "custom") != "custom" or "input_schema" not in tool:
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise _unsupported(f"tools[{i}]", f"server tool '{kind}' is not served: the gateway serves "
                                   "client tools (name, description, input_schema) only")
            fn: dict[str, Any] = {"name": str(tool.get("name")), "parameters": tool["input_schema"]}
            if isinstance(tool.get("description"), str):
                fn["description"] = tool["description"]
            out.append({"type": "function", "function": fn})
        chat["tools"] = out
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in OPENAI_TOOL_CHOICES:
        chat["tool_choice"] = OPENAI_TOOL_CHOICES[str(kind)]
    else:
        raise _unsupported("tool_choice", "only 'auto', 'any', 'none' or one named tool are served")
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True and "tools" in chat:
        chat["parallel_tool_calls"] = False


def _unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' is not supported: {why}", param=param, code="unsupported_parameter")


# --------------------------------------------------------------------------- answers


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def usage(chat_usage: Any) -> dict[str, int]:
    u = chat_usage if isinstance(chat_usage, dict) else {}
    details = u.get("prompt_tokens_details") or {}
    return usage_counts(u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0,
                        details.get("cached_tokens") or 0, details.get("cache_write_tokens") or 0)


def stop_reason(finish_reason: Any) -> str:
    return STOP_REASONS.get(str(finish_reason), "end_turn")


def tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    try:
        args = jsonutil.loads(fn.get("arguments") or "{}")
    except jsonutil.JSONDecodeError:
        args = {}
    return {"type": "tool_use", "id": str(call.get("id")), "name": str(fn.get("name")),
            "input": args if isinstance(args, dict) else {}}


def from_completion(req: MessagesRequest, completion: dict[str, Any]) -> dict[str, Any]:
    """A whole ``chat.completion`` (with ``fusion`` for a pool) as an Anthropic Messages response."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    content.extend(tool_use(c) for c in message.get("tool_calls") or ())
    out = {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": usage(completion.get("usage")),
    }
    if "fusion" in completion:
        out["fusion"] = completion["fusion"]
    return out


def error_body(exc: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(exc.http_status), "message": str(exc)}}


class MessageEvents:
    """Chat chunks -> Anthropic stream events: ``message_start``, ``content_block_start``/``_delta``/``_stop``
    per text or tool-use block, then ``message_delta`` (stop reason, usage, ``fusion``) and ``message_stop``."""

    def __init__(self, req: MessagesRequest) -> None:
        self._req = req
        self._id = new_message_id()
        self._index = -1  # the open block's index
        self._open: str | None = None  # "text", or the chat tool-call index of the open tool_use block
        self._finish: str | None = None
        self._usage: Any = None
        self._fusion: Any = None

    def start(self) -> list[dict[str, Any]]:
        message: dict[str, Any] = {"id": self._id, "type": "message", "role": "assistant", "model": self._req.model,
                                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage(None)}
        return [{"type": "message_start", "message": message}]

    def chunk(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        if chunk.get("fusion") is not None:
            self._fusion = chunk["fusion"]
        if chunk.get("fusion_event") is not None:
            out.append({"type": "fusion_event", "event": chunk["fusion_event"]})
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._open != "text":
                    out.extend(self._block({"type": "text", "text": ""}, "text"))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                key = f"tool:{call.get('index', 0)}"
                fn = call.get("function") or {}
                if self._open != key:
                    block = {"type": "tool_use", "id": str(call.get("id")), "name": str(fn.get("name")), "input": {}}
                    out.extend(self._block(block, key))
                if fn.get("arguments"):
                    out.append(self._delta({"type": "input_json_delta", "partial_json": fn["arguments"]}))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def _block(self, block: dict[str, Any], key: str) -> list[dict[str, Any]]:
        out = self._close()
        self._index += 1
        self._open = key
        return [*out, {"type": "content_block_start", "index": self._index, "content_block": block}]

    def _delta(self, delta: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self._index, "delta": delta}

    def _close(self) -> list[dict[str, Any]]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._index}]

    def finish(self) -> list[dict[str, Any]]:
        delta: dict[str, Any] = {"type": "message_delta",
                                 "delta": {"stop_reason": stop_reason(self._finish), "stop_sequence": None},
                                 "usage": usage(self._usage)}
        if self._fusion is not None:
            delta["fusion"] = self._fusion
        return [*self._close(), delta, {"type": "message_stop"}]

    def failed(self, exc: GatewayError) -> list[dict[str, Any]]:
        return [error_body(exc)]
