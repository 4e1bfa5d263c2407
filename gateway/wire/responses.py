"""The OpenAI Responses API on the wire: a request read into a chat completions body, the answer written back.

The gateway is stateless: nothing is stored, so ``previous_response_id``, ``conversation``, ``store: true``,
``background`` and item references are refused with a 400 that says to send the whole conversation.
Only function tools are served; a built-in tool (``web_search``, ``file_search``, ``computer_use`` ...)
is a 400, never silently dropped. See :mod:`gateway.wire.responses_stream` for the stream events.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.wire.errors import InvalidRequest
from gateway.wire.protocol import ChatRequest, check_chat_request, content_text, decode_object

#: Responses fields that need state the gateway does not keep
_STATEFUL = {
    "previous_response_id": "the gateway keeps no responses",
    "conversation": "the gateway keeps no conversations",
    "background": "the gateway runs no background responses",
    "prompt": "the gateway keeps no prompt templates",
}
#: fields read below; anything else is refused rather than ignored
_KNOWN = frozenset(
    {
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text",
        "max_output_tokens", "temperature", "top_p", "reasoning", "metadata", "user", "stream", "store",
        "fusion", "include", "truncation", "service_tier", "safety_identifier", "prompt_cache_key",
        "stream_options", "top_logprobs", "max_tool_calls", *_STATEFUL,
    }
)  # fmt: skip


@dataclass(slots=True)
class ResponsesRequest:
    """What the answer echoes back of the request (the Response object repeats its parameters)."""

    model: str
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    user: str | None = None


def parse_responses_request(raw: bytes, *, max_messages: int) -> tuple[ChatRequest, ResponsesRequest]:
    """The chat request a Responses body asks for, and what the answer must echo of it."""
    body = decode_object(raw)
    for key in body:
        if key not in _KNOWN:
            raise _unsupported(key, "the gateway does not serve this field, and ignoring it could change the answer")
    for key, why in _STATEFUL.items():
        if body.get(key) not in (None, False):
            raise _unsupported(key, f"{why} (it is stateless); send the whole conversation in 'input'")
    if body.get("store") is True:
        raise _unsupported("store", "the gateway keeps no responses (it is stateless); send 'store': false or omit it")
    if body.get("include"):
        raise _unsupported("include", "no extra output data is available from the gateway")
    if body.get("top_logprobs"):
        raise _unsupported("top_logprobs", "log-probabilities are not translated")
    if body.get("truncation") not in (None, "disabled"):
        raise _unsupported("truncation", "only 'disabled' is served: the gateway never drops input")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        if model is None:
            raise InvalidRequest("'model' is a required property", param="model", code="missing_required")
        raise InvalidRequest("'model' must be a non-empty string", param="model", code="invalid_type")
    echo = ResponsesRequest(model=model)
    chat: dict[str, Any] = {"model": model}
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _type("instructions", "a string")
        echo.instructions = instructions
    messages = ([{"role": "developer", "content": instructions}] if instructions else []) + list(
        _messages(body.get("input"))
    )
    if not messages:
        raise InvalidRequest("'input' must not be empty", param="input", code="missing_required")
    chat["messages"] = messages
    _tools(body, chat, echo)
    _text(body.get("text"), chat, echo)
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _type(key, "a number")
            chat[key] = value
            setattr(echo, key, value)
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest("'max_output_tokens' must be an integer >= 1", param="max_output_tokens",
                                 code="invalid_value")
        chat["max_completion_tokens"] = echo.max_output_tokens = limit
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise _type("reasoning", "an object")
        echo.reasoning = reasoning
        if reasoning.get("effort") is not None:
            chat["reasoning_effort"] = reasoning["effort"]
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _type("metadata", "an object")
        echo.metadata = metadata
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise _type("user", "a string")
        chat["user"] = echo.user = user
    stream = body.get("stream")
    if stream:
        chat["stream"] = True
        # The Response reports usage, so the chat answer must carry it.
        chat["stream_options"] = {"include_usage": True}
    if body.get("fusion") is not None:
        chat["fusion"] = body["fusion"]
    return check_chat_request(chat, max_messages=max_messages), echo


# --------------------------------------------------------------------------- input items


def _messages(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, str):
        yield {"role": "user", "content": value}
        return
    if not isinstance(value, list):
        if value is None:
            raise InvalidRequest("'input' is a required property", param="input", code="missing_required")
        raise _type("input", "a string or an array of input items")
    pending: dict[str, Any] | None = None  # an assistant message collecting consecutive function calls
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _type(where, "an object")
        kind = item.get("type", "message")
        if kind == "function_call":
            call = {
                "id": _string(item, "call_id", where),
                "type": "function",
                "function": {"name": _string(item, "name", where), "arguments": _string(item, "arguments", where)},
            }
            if pending is None:
                pending = {"role": "assistant", "content": None, "tool_calls": []}
            pending["tool_calls"].append(call)
            continue
        if pending is not None:
            yield pending
            pending = None
        if kind == "message":
            yield _message(item, where)
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _output_text(output, f"{where}.output")
            yield {"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": text}
        elif kind == "item_reference":
            raise _unsupported(f"{where}.type", "the gateway keeps no items to refer to (it is stateless)")
        else:
            raise _unsupported(f"{where}.type", f"input items of type '{kind}' are not served")
    if pending is not None:
        yield pending


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(
            f"'{where}.role' must be one of assistant, developer, system, user; got '{role}'",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _type(f"{where}.content", "a string or an array of content parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise _type(at, "an object")
        kind = part.get("type")
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _unsupported(f"{at}.image_url", "an image is served by URL or data: URL (no file ids)")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _unsupported(f"{at}.type", f"content parts of type '{kind}' are not served")
    if role != "user" and any(p["type"] != "text" for p in parts):
        raise _unsupported(f"{where}.content", f"only text is served in a '{role}' message")
    return {"role": role, "content": parts if role == "user" else content_text(parts)}


def _output_text(value: Any, where: str) -> str:
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") in ("input_text", "output_text")
                                       for p in value):
        return "".join(str(p.get("text", "")) for p in value)
    raise _unsupported(where, "a function call output must be a string or text parts")


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{where}.{key}' must be a string", param=f"{where}.{key}", code="invalid_type")
    return value


# --------------------------------------------------------------------------- tools and text format


def _tools(body: dict[str, Any], chat: dict[str, Any], echo: ResponsesRequest) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _type("tools", "an array")
        out = []
        for i, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise _unsupported(
                    f"tools[{i}].type", f"built-in tool '{kind}' is not served: the gateway serves function tools only"
                )
            assert isinstance(tool, dict)
            fn: dict[str, Any] = {"name": _string(tool, "name", f"tools[{i}]")}
            for key in ("description", "parameters", "strict"):
                if tool.get(key) is not None:
                    fn[key] = tool[key]
            out.append({"type": "function", "function": fn})
            echo.tools.append({"type": "function", "name": fn["name"], "description": tool.get("description"),
                               "parameters": tool.get("parameters"), "strict": tool.get("strict")})
        if out:
            chat["tools"] = out
    choice = body.get("tool_choice")
    if choice is not None:
        if choice in ("auto", "none", "required"):
            chat["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
            chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            raise _unsupported("tool_choice", "only 'auto', 'none', 'required' or one named function are served")
        echo.tool_choice = choice
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise _type("parallel_tool_calls", "a boolean")
        echo.parallel_tool_calls = parallel
        if "tools" in chat:
            chat["parallel_tool_calls"] = parallel


def _text(value: Any, chat: dict[str, Any], echo: ResponsesRequest) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise _type("text", "an object")
    echo.text = value
    fmt = value.get("format")
    if value.get("verbosity") is not None:
        chat["verbosity"] = value["verbosity"]
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        if not isinstance(fmt.get("schema"), dict):
            raise _type("text.format.schema", "a JSON schema object")
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        spec.setdefault("name", "response")
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
        return
    raise InvalidRequest(
        f"'text.format.type' must be one of json_object, json_schema, text; got '{kind}'",
        param="text.format.type",
        code="invalid_value",
    )


def _unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' is not supported: {why}", param=param, code="unsupported_parameter")


def _type(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' must be {what}", param=param, code="invalid_type")


# --------------------------------------------------------------------------- the Response object


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(16)


def new_item_id(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_hex(16)


def usage(chat_usage: Any) -> dict[str, Any] | None:
    """Chat completions usage -> Responses usage (``usage_estimated`` kept: the gateway counted)."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = chat_usage.get("prompt_tokens") or 0
    output = chat_usage.get("completion_tokens") or 0
    pdet = chat_usage.get("prompt_tokens_details") or {}
    cdet = chat_usage.get("completion_tokens_details") or {}
    out: dict[str, Any] = {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": pdet.get("cached_tokens") or 0,
            "cache_write_tokens": pdet.get("cache_write_tokens") or 0,
        },
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": cdet.get("reasoning_tokens") or 0},
        "total_tokens": chat_usage.get("total_tokens") or prompt + output,
    }
    if chat_usage.get("usage_estimated"):
        out["usage_estimated"] = True
    return out


#: chat ``finish_reason`` -> the Response's ``incomplete_details.reason`` (others complete)
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(id: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": id, "type": "message", "role": "assistant", "status": status, "content": parts}


def function_call_item(id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def output_items(message: dict[str, Any], status: str) -> list[dict[str, Any]]:
    """A chat assistant message as Response output items: one ``message``, then one item per tool call."""
    items: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        parts.append(text_part(content))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        items.append(message_item(new_item_id("msg"), parts, status))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        items.append(function_call_item(new_item_id("fc"), str(call.get("id") or new_item_id("call")),
                                        str(fn.get("name", "")), str(fn.get("arguments") or ""), "completed"))
    return items


def response_object(
    req: ResponsesRequest,
    *,
    id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response object. ``finish_reason`` (the chat one) decides ``incomplete_details``."""
    reason = INCOMPLETE.get(finish_reason or "")
    if status == "completed" and reason is not None:
        status = "incomplete"
    out: dict[str, Any] = {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": reason} if status == "incomplete" and reason else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": req.model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls,
        "previous_response_id": None,
        "reasoning": req.reasoning,
        "store": False,
        "temperature": req.temperature,
        "text": req.text,
        "tool_choice": req.tool_choice,
        "tools": req.tools,
        "top_p": req.top_p,
        "truncation": "disabled",
        "usage": usage,
        "user": req.user,
        "metadata": req.metadata,
    }
    # Optional fields are left out rather than null: several of them may not be null.
    return {k: v for k, v in out.items() if v is not None or k in _NULLABLE}


#: Response fields that are always present, null or not
_NULLABLE = frozenset({"error", "incomplete_details", "instructions", "temperature", "top_p", "completed_at"})


def from_completion(req: ResponsesRequest, completion: dict[str, Any]) -> dict[str, Any]:
    """A whole ``chat.completion`` (with ``fusion`` for a pool) as a Response object."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    finish = choice.get("finish_reason")
    out = response_object(
        req,
        id=new_response_id(),
        created_at=int(completion.get("created") or time.time()),
        status="completed",
        output=output_items(choice.get("message") or {}, "incomplete" if finish in INCOMPLETE else "completed"),
        usage=usage(completion.get("usage")),
        finish_reason=finish,
    )
    if "fusion" in completion:
        out["fusion"] = completion["fusion"]
    return out


def error_object(status: int, message: str) -> dict[str, Any]:
    """A failed Response's ``error``: the code from the status, as the Responses API names them."""
    code = "rate_limit_exceeded" if status == 429 else "invalid_prompt" if 400 <= status < 500 else "server_error"
    return {"code": code, "message": message}


#: Response error codes that say the request itself was at fault (the official ``ResponseErrorCode``
#: values, with the ``error`` event's context-length code); any other code is the service's failure
_REQUEST_AT_FAULT = frozenset(
    {
        "invalid_prompt", "data_residency_mismatch", "bio_policy", "invalid_image", "invalid_image_format",
        "invalid_base64_image", "invalid_image_url", "image_too_large", "image_too_small", "image_parse_error",
        "image_content_policy_violation", "invalid_image_mode", "image_file_too_large",
        "unsupported_image_media_type", "empty_image_file", "failed_to_download_image", "image_file_not_found",
        "context_length_exceeded",
    }
)  # fmt: skip


def error_status(code: Any) -> int:
    """The HTTP status a failed Response's error ``code`` stands for: :func:`error_object` read backwards."""
    if code == "rate_limit_exceeded":
        return 429
    if code == "vector_store_timeout":
        return 504
    return 400 if code in _REQUEST_AT_FAULT else 500
