"""OpenAI chat request -> Anthropic Messages request.

- System and developer messages, wherever they are, become the top-level ``system`` (joined by a blank line).
- ``role: tool`` messages become ``tool_result`` blocks in a user turn; consecutive turns of one role are
  merged (Anthropic wants user and assistant to alternate), tool results first within a turn.
- Images: a ``data:`` URL becomes a base64 source, an http(s) URL a ``url`` source.
- ``response_format: json_schema`` becomes one forced tool whose ``input_schema`` is the schema; the answer's
  tool input is handed back as the message content (see :mod:`.response`). Anthropic has no JSON mode, so
  ``json_object`` is refused.
- ``max_tokens`` is required by Anthropic: the provider's ``max_tokens`` (default 4096) when the caller gives none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config.providers import AnthropicProviderConfig
from gateway.providers import translate as t
from gateway.providers.translate import Unsupported
from gateway.wire.anthropic import IMAGE_TYPES, TOOL_CHOICES, image_source

#: OpenAI fields translated here (a value Anthropic cannot honour is refused, see ``build``)
HANDLED = t.COMMON_FIELDS | {"top_k", "user"}
#: OpenAI fields dropped because they cannot change the answer
DROPPED = frozenset({"stream_options", "seed", "service_tier", "store", "metadata", "prediction"})

#: fields refused whenever they ask for something, and why
_REFUSED = {
    "logprobs": "Anthropic returns no token log-probabilities",
    "top_logprobs": "Anthropic returns no token log-probabilities",
    "logit_bias": "Anthropic has no logit bias",
    "presence_penalty": "Anthropic has no presence penalty",
    "frequency_penalty": "Anthropic has no frequency penalty",
}
_JSON_TOOL_DESCRIPTION = "Give your answer as this tool's input; it must match the schema exactly."


@dataclass(frozen=True, slots=True)
class AnthropicRequest:
    payload: dict[str, Any]
    #: name of the forced tool that carries a ``response_format: json_schema`` answer, if any
    json_tool: str | None
    include_usage: bool


def build(body: dict[str, Any], config: AnthropicProviderConfig, model: str, *, stream: bool) -> AnthropicRequest:
    """Translate ``body``; raises :class:`Unsupported` for what Anthropic cannot honour."""
    who = t.who(model, "anthropic")
    t.check_fields(body, who, HANDLED, DROPPED)
    t.check_single_choice(body, who)
    t.check_text_modality(body, who)
    t.refuse_each(body, who, _REFUSED)

    messages = body.get("messages") or []
    payload: dict[str, Any] = {
        "model": str(body.get("model") or ""),
        "messages": _messages(messages, who),
        "max_tokens": t.max_output_tokens(body) or config.max_tokens,
    }
    system = t.system_text(messages, who)
    if system:
        payload["system"] = system
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
        if body.get(src) is not None:
            payload[dst] = body[src]
    stops = t.stop_sequences(body.get("stop"), who)
    if stops:
        payload["stop_sequences"] = stops
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}

    json_tool = _tools(body, payload, who)
    if stream:
        payload["stream"] = True
    return AnthropicRequest(
        payload=t.defaults_under(config.extra_body, payload),
        json_tool=json_tool,
        include_usage=t.include_usage(body),
    )


def _messages(messages: list[dict[str, Any]], who: str) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            continue
        if role == "user":
            blocks = _user_blocks(msg.get("content"), who, f"{where}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(msg, who, where)
        elif role == "tool":
            blocks = [_tool_result(msg, who, where)]
            role = "user"
        else:
            raise Unsupported(who, f"{where}.role", f"role '{role}' is not translated; use tools and role 'tool'")
        if not blocks:
            continue  # Anthropic refuses empty turns; an empty message says nothing anyway
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((str(role), blocks))
    out = []
    for role, blocks in turns:
        if role == "user":
            # tool_result blocks must open the user turn that answers the tool calls
            blocks = sorted(blocks, key=lambda b: b["type"] != "tool_result")  # stable: order kept otherwise
        out.append({"role": role, "content": blocks})
    return out


def _user_blocks(content: Any, who: str, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(t.parts(content, who, where)):
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise Unsupported(who, f"{where}[{j}].text", "must be a string")
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(t.image_url(part, who, f"{where}[{j}]"), who, f"{where}[{j}].image_url.url"))
        else:
            raise Unsupported(who, f"{where}[{j}].type", f"content parts of type '{kind}' are not translated")
    return blocks


def _image(url: str, who: str, where: str) -> dict[str, Any]:
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": image_source(None, None, url)}
    data = t.data_url(url)
    if data is None:
        raise Unsupported(who, where, "an image must be an http(s) URL or a base64 data: URL")
    if data.mime not in IMAGE_TYPES:
        raise Unsupported(who, where, f"image type '{data.mime}' (Anthropic takes {', '.join(sorted(IMAGE_TYPES))})")
    return {"type": "image", "source": image_source(data.mime, data.data, None)}


def _assistant_blocks(msg: dict[str, Any], who: str, where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = t.text_only(msg.get("content"), who, f"{where}.content")
    if text:
        blocks.append({"type": "text", "text": text})
    for k, call in enumerate(msg.get("tool_calls") or ()):
        call_id, name, args = t.identified_call(call, who, f"{where}.tool_calls[{k}]")
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": args})
    return blocks


def _tool_result(msg: dict[str, Any], who: str, where: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise Unsupported(who, f"{where}.tool_call_id", "a tool message needs the id of the call it answers")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    text = t.text_only(msg.get("content"), who, f"{where}.content")
    if text:
        block["content"] = text
    return block


def _tools(body: dict[str, Any], payload: dict[str, Any], who: str) -> str | None:
    """Tools, tool choice and ``response_format`` into ``payload``; returns the forced JSON tool's name."""
    functions = t.function_tools(body.get("tools"), who)
    forced = t.forced_function(body.get("tool_choice"), who)
    fmt = t.response_format(body.get("response_format"), who)
    if fmt == "json_object":
        raise Unsupported(
            who, "response_format", "Anthropic has no JSON mode; ask for {'type': 'json_schema'} with a schema"
        )
    if isinstance(fmt, t.JSONSchemaFormat):
        if functions:
            raise Unsupported(
                who,
                "response_format",
                "a json_schema answer is a forced tool here, so it cannot be combined with tools",
            )
        if fmt.schema.get("type", "object") != "object":
            raise Unsupported(who, "response_format.json_schema.schema", "the schema must describe an object")
        payload["tools"] = [
            {"name": fmt.name, "description": fmt.description or _JSON_TOOL_DESCRIPTION, "input_schema": fmt.schema}
        ]
        payload["tool_choice"] = {"type": "tool", "name": fmt.name}
        return fmt.name
    if not functions:
        return None
    tools = []
    for fn in functions:
        tool: dict[str, Any] = {
            "name": fn["name"],
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if isinstance(fn.get("description"), str) and fn["description"]:
            tool["description"] = fn["description"]
        tools.append(tool)
    payload["tools"] = tools
    choice = body.get("tool_choice")
    if forced is not None:
        tool_choice: dict[str, Any] = {"type": "tool", "name": forced}
    else:
        tool_choice = {"type": TOOL_CHOICES.get(choice if isinstance(choice, str) else "auto", "auto")}
    if body.get("parallel_tool_calls") is False and tool_choice["type"] != "none":
        tool_choice["disable_parallel_tool_use"] = True
    payload["tool_choice"] = tool_choice
    return None
