"""OpenAI chat request -> OpenAI Responses request (``POST /responses``), always with ``store: false``.

- The system and developer messages that open the conversation become ``instructions`` (joined by a blank
  line); one later in the conversation stays where it is, as an input message of its role.
- User messages become input messages: text parts ``input_text``, image parts ``input_image`` (URL or
  ``data:`` URL, with their ``detail``), file parts ``input_file``. Assistant messages become assistant
  input messages, then one ``function_call`` item per tool call; ``role: tool`` messages become
  ``function_call_output`` items.
- Function tools are flattened (``{type, name, description, parameters, strict}``). ``strict`` is sent as
  the caller meant it: absent means false in chat completions, where the Responses API would default to true.
- ``response_format`` becomes ``text.format`` (``json_schema`` with its name, schema, strict and description;
  ``json_object``); ``verbosity`` becomes ``text.verbosity``; ``reasoning_effort`` ``reasoning.effort``;
  ``max_completion_tokens`` (or ``max_tokens``) ``max_output_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.providers import translate as t
from gateway.providers.translate import Unsupported

#: chat fields translated here (a value the Responses API cannot honour is refused, see ``build``)
HANDLED = t.COMMON_FIELDS | {
    "reasoning_effort",
    "verbosity",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
}
#: chat fields dropped because they cannot change the answer (``store``: the call is always ``store: false``)
DROPPED = frozenset({"stream_options", "seed", "store", "prediction"})
#: chat fields the Responses request carries under the same name and meaning
_SAME = ("temperature", "top_p", "metadata", "user", "safety_identifier", "prompt_cache_key", "service_tier")
_NO_EQUIVALENT = "the Responses API has no equivalent"
#: fields refused whenever they ask for something, and why
_REFUSED = {
    "stop": f"{_NO_EQUIVALENT} (no stop sequences)",
    "logprobs": "token log-probabilities are not translated",
    "top_logprobs": "token log-probabilities are not translated",
    "logit_bias": _NO_EQUIVALENT,
    "presence_penalty": _NO_EQUIVALENT,
    "frequency_penalty": _NO_EQUIVALENT,
}


@dataclass(frozen=True, slots=True)
class ResponsesCall:
    payload: dict[str, Any]
    include_usage: bool


def build(body: dict[str, Any], model: str, *, stream: bool) -> ResponsesCall:
    """Translate ``body``; raises :class:`Unsupported` for what the Responses API cannot honour."""
    who = t.who(model, "openai responses")
    t.check_fields(body, who, HANDLED, DROPPED)
    t.check_single_choice(body, who)
    t.check_text_modality(body, who)
    t.refuse_each(body, who, _REFUSED)

    instructions, items = _input(body.get("messages") or [], who)
    payload: dict[str, Any] = {"model": str(body.get("model") or "")}
    if instructions:
        payload["instructions"] = instructions
    payload["input"] = items
    _tools(body, payload, who)
    text = _text(body, who)
    if text:
        payload["text"] = text
    limit = t.max_output_tokens(body)
    if limit is not None:
        payload["max_output_tokens"] = limit
    for key in _SAME:
        if body.get(key) is not None:
            payload[key] = body[key]
    if body.get("reasoning_effort") is not None:
        payload["reasoning"] = {"effort": body["reasoning_effort"]}
    payload["store"] = False  # the gateway keeps no conversation state upstream either
    if stream:
        payload["stream"] = True
    return ResponsesCall(payload=payload, include_usage=t.include_usage(body))


# --------------------------------------------------------------------------- messages -> input items


def _input(messages: list[dict[str, Any]], who: str) -> tuple[str, list[dict[str, Any]]]:
    """``instructions`` (the opening system and developer messages) and the input items of the rest."""
    opening = 0
    while opening < len(messages) and messages[opening].get("role") in ("system", "developer"):
        opening += 1
    instructions = t.system_text(messages[:opening], who)
    items: list[dict[str, Any]] = []
    for i in range(opening, len(messages)):
        items.extend(_items(messages[i], who, f"messages[{i}]"))
    return instructions, items


def _items(msg: dict[str, Any], who: str, where: str) -> list[dict[str, Any]]:
    role = msg.get("role")
    if role in ("system", "developer"):
        return [{"role": role, "content": t.text_only(msg.get("content"), who, f"{where}.content")}]
    if role == "user":
        content = msg.get("content")
        if isinstance(content, str):
            return [{"role": "user", "content": content}]
        return [{"role": "user", "content": _user_parts(content, who, f"{where}.content")}]
    if role == "assistant":
        return _assistant(msg, who, where)
    if role == "tool":
        call_id = msg.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise Unsupported(who, f"{where}.tool_call_id", "a tool message needs the id of the call it answers")
        output = t.text_only(msg.get("content"), who, f"{where}.content")
        return [{"type": "function_call_output", "call_id": call_id, "output": output}]
    raise Unsupported(who, f"{where}.role", f"role '{role}' is not translated; use tools and role 'tool'")


def _user_parts(content: Any, who: str, where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(t.parts(content, who, where)):
        kind = part.get("type")
        at = f"{where}[{j}]"
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise Unsupported(who, f"{at}.text", "must be a string")
            out.append({"type": "input_text", "text": part["text"]})
        elif kind == "image_url":
            img = part.get("image_url")
            detail = img.get("detail") if isinstance(img, dict) else None
            out.append({"type": "input_image", "image_url": t.image_url(part, who, at),
                        "detail": detail if detail in ("low", "high", "auto") else "auto"})  # fmt: skip
        elif kind == "file" and isinstance(part.get("file"), dict):
            fields = {k: v for k, v in part["file"].items() if k in ("file_data", "file_id", "filename")}
            out.append({"type": "input_file", **fields})
        else:
            raise Unsupported(who, f"{at}.type", f"content parts of type '{kind}' are not translated")
    return out


def _assistant(msg: dict[str, Any], who: str, where: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    text = t.text_only(msg.get("content"), who, f"{where}.content")
    if text:
        items.append({"role": "assistant", "content": text})
    for k, call in enumerate(msg.get("tool_calls") or ()):
        call_id, name, _ = t.identified_call(call, who, f"{where}.tool_calls[{k}]")
        # The arguments go up as the model wrote them (checked above to be a JSON object): both APIs carry
        # the same JSON string.
        arguments = call["function"].get("arguments") or "{}"
        items.append({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments})
    return items


# --------------------------------------------------------------------------- tools and the text format


def _tools(body: dict[str, Any], payload: dict[str, Any], who: str) -> None:
    functions = t.function_tools(body.get("tools"), who)
    forced = t.forced_function(body.get("tool_choice"), who)
    if functions:
        tools = []
        for fn in functions:
            tool: dict[str, Any] = {"type": "function", "name": fn["name"]}
            if isinstance(fn.get("description"), str):
                tool["description"] = fn["description"]
            tool["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
            tool["strict"] = fn.get("strict") is True
            tools.append(tool)
        payload["tools"] = tools
    choice = body.get("tool_choice")
    if forced is not None:
        payload["tool_choice"] = {"type": "function", "name": forced}
    elif choice is not None:
        payload["tool_choice"] = choice
    if isinstance(body.get("parallel_tool_calls"), bool):
        payload["parallel_tool_calls"] = body["parallel_tool_calls"]


def _text(body: dict[str, Any], who: str) -> dict[str, Any]:
    text: dict[str, Any] = {}
    fmt = t.response_format(body.get("response_format"), who)
    if fmt == "json_object":
        text["format"] = {"type": "json_object"}
    elif isinstance(fmt, t.JSONSchemaFormat):
        spec = body["response_format"]["json_schema"]
        out: dict[str, Any] = {"type": "json_schema", "name": fmt.name, "schema": fmt.schema}
        if fmt.description is not None:
            out["description"] = fmt.description
        if isinstance(spec.get("strict"), bool):
            out["strict"] = spec["strict"]
        text["format"] = out
    if body.get("verbosity") is not None:
        text["verbosity"] = body["verbosity"]
    return text
