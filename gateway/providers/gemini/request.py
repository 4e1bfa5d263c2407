"""OpenAI chat request -> Gemini ``GenerateContentRequest``.

- System and developer messages, wherever they are, become ``systemInstruction`` (joined by a blank line).
- Roles: user -> ``user``, assistant -> ``model``; ``role: tool`` messages become ``functionResponse`` parts in
  a user turn, named after the call they answer (Gemini matches responses by function name; the name is
  recovered from the ``tool_call_id`` in the earlier assistant message). A tool result that is a JSON object
  is passed as the response object; any other text as ``{"content": <text>}``. Consecutive turns of one
  role are merged: Gemini wants user and model to alternate.
- Images: only base64 ``data:`` URLs (``inlineData``); Gemini cannot fetch arbitrary URLs, so those are refused.
- ``response_format``: ``json_object`` -> ``responseMimeType: application/json``; ``json_schema`` -> that plus
  ``responseSchema`` (converted, see :mod:`.schema`).
- Thought signatures: Gemini asks for the ``thoughtSignature`` of a function call back with the call. It
  travels in the tool call's ``extra_content.google.thought_signature``, as in Google's own OpenAI endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config.providers import GeminiProviderConfig
from gateway.providers import translate as t
from gateway.providers.gemini.schema import to_gemini_schema
from gateway.providers.translate import Unsupported
from gateway.wire import jsonutil

HANDLED = t.COMMON_FIELDS | {"top_k", "seed"}
DROPPED = frozenset({"stream_options", "user", "service_tier", "store", "metadata", "prediction"})

#: fields refused whenever they ask for something, and why
_REFUSED = {
    "logprobs": "log-probabilities are not translated",
    "top_logprobs": "log-probabilities are not translated",
    "logit_bias": "Gemini has no logit bias",
}
#: OpenAI sampling field -> generationConfig field
_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


@dataclass(frozen=True, slots=True)
class GeminiRequest:
    payload: dict[str, Any]
    #: "models/<name>" or "tunedModels/<name>": the resource the URL names
    resource: str
    include_usage: bool


def build(body: dict[str, Any], config: GeminiProviderConfig, model: str) -> GeminiRequest:
    """Translate ``body``; raises :class:`Unsupported` for what Gemini cannot honour."""
    who = t.who(model, "gemini")
    t.check_fields(body, who, HANDLED, DROPPED)
    t.check_text_modality(body, who)
    t.refuse_each(body, who, _REFUSED)
    if body.get("parallel_tool_calls") is False and body.get("tools"):
        raise Unsupported(who, "parallel_tool_calls", "Gemini cannot be limited to one tool call per answer")

    messages = body.get("messages") or []
    payload: dict[str, Any] = {"contents": _contents(messages, who)}
    system = t.system_text(messages, who)
    if system:
        payload["systemInstruction"] = {"parts": [{"text": system}]}

    generation: dict[str, Any] = {}
    limit = t.max_output_tokens(body)
    if limit is not None:
        generation["maxOutputTokens"] = limit
    for src, dst in _GENERATION.items():
        if body.get(src) is not None:
            generation[dst] = body[src]
    stops = t.stop_sequences(body.get("stop"), who)
    if stops:
        generation["stopSequences"] = stops
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        generation["candidateCount"] = n
    fmt = t.response_format(body.get("response_format"), who)
    if fmt is not None:
        generation["responseMimeType"] = "application/json"
        if isinstance(fmt, t.JSONSchemaFormat):
            generation["responseSchema"] = to_gemini_schema(fmt.schema, who, "response_format.json_schema.schema")
    if generation:
        payload["generationConfig"] = generation
    _tools(body, payload, who)
    return GeminiRequest(
        payload=t.defaults_under(config.extra_body, payload),
        resource=resource(str(body.get("model") or "")),
        include_usage=t.include_usage(body),
    )


def resource(model: str) -> str:
    """``gemini-2.5-flash`` -> ``models/gemini-2.5-flash``; a name that already says its collection is kept."""
    return model if "/" in model else f"models/{model}"


def _contents(messages: list[dict[str, Any]], who: str) -> list[dict[str, Any]]:
    names = t.tool_call_names(messages)
    contents: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            continue
        if role == "user":
            parts = _user_parts(msg.get("content"), who, f"{where}.content")
        elif role == "assistant":
            parts = _model_parts(msg, who, where)
            role = "model"
        elif role == "tool":
            parts = [_function_response(msg, names, who, where)]
            role = "user"
        else:
            raise Unsupported(who, f"{where}.role", f"role '{role}' is not translated; use tools and role 'tool'")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _user_parts(content: Any, who: str, where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(t.parts(content, who, where)):
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise Unsupported(who, f"{where}[{j}].text", "must be a string")
            if part["text"]:
                out.append({"text": part["text"]})
        elif kind == "image_url":
            url = t.image_url(part, who, f"{where}[{j}]")
            data = t.data_url(url)
            if data is None:
                raise Unsupported(
                    who,
                    f"{where}[{j}].image_url.url",
                    "Gemini cannot fetch images from URLs; send the image as a base64 data: URL",
                )
            out.append({"inlineData": {"mimeType": data.mime, "data": data.data}})
        else:
            raise Unsupported(who, f"{where}[{j}].type", f"content parts of type '{kind}' are not translated")
    return out


def _model_parts(msg: dict[str, Any], who: str, where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    text = t.text_only(msg.get("content"), who, f"{where}.content")
    if text:
        out.append({"text": text})
    for k, call in enumerate(msg.get("tool_calls") or ()):
        _, name, args = t.function_call(call, who, f"{where}.tool_calls[{k}]")
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        signature = _thought_signature(call)
        if signature:
            part["thoughtSignature"] = signature
        out.append(part)
    return out


def _thought_signature(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) else None


def _function_response(msg: dict[str, Any], names: dict[str, str], who: str, where: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise Unsupported(
            who, f"{where}.tool_call_id", "matches no earlier assistant tool call; Gemini needs the function's name"
        )
    text = t.text_only(msg.get("content"), who, f"{where}.content")
    try:
        parsed = jsonutil.loads(text) if text else None
    except jsonutil.JSONDecodeError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _tools(body: dict[str, Any], payload: dict[str, Any], who: str) -> None:
    functions = t.function_tools(body.get("tools"), who)
    forced = t.forced_function(body.get("tool_choice"), who)
    if not functions:
        return
    declarations = []
    for i, fn in enumerate(functions):
        decl: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str) and fn["description"]:
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        # Gemini refuses an OBJECT without properties: a function without parameters declares none.
        if isinstance(params, dict) and params.get("properties"):
            decl["parameters"] = to_gemini_schema(params, who, f"tools[{i}].function.parameters")
        declarations.append(decl)
    payload["tools"] = [{"functionDeclarations": declarations}]
    choice = body.get("tool_choice")
    if forced is not None:
        config: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [forced]}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif choice == "none":
        config = {"mode": "NONE"}
    else:
        config = {"mode": "AUTO"}
    payload["toolConfig"] = {"functionCallingConfig": config}
