"""What the translating providers (Anthropic, Gemini) share: reading an OpenAI request, writing OpenAI answers.

A translating provider must never change what a request means without saying so. A field it cannot
honour and that would change the answer (``n > 1`` where there is no such thing, ``logprobs``, a JSON
mode the upstream lacks) is refused with :class:`Unsupported`, a 400 raised before any upstream call.
Only fields that cannot change the answer are dropped; each provider lists them in its docstring.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from gateway.books.usage import Usage
from gateway.wire import jsonutil
from gateway.wire.errors import UpstreamStatusError

T = TypeVar("T")


class Unsupported(UpstreamStatusError):
    """The request asks for something the provider cannot honour: a 400 before any upstream call.

    An :class:`UpstreamStatusError` with status 400, so a pool whose every member refused answers 400,
    exactly as when every upstream rejected the request itself."""

    def __init__(self, who: str, param: str | None, why: str) -> None:
        what = f"'{param}' is not supported" if param else "the request cannot be translated"
        super().__init__(f"{who}: {what}: {why}", upstream_status=400)
        self.param = param
        self.code = "unsupported_parameter"

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "unsupported"


def guarded(who_: str, build: Callable[[], T]) -> T:
    """Run a request translation. A request shaped in a way the translation did not foresee is the
    caller's 400, not the gateway's 500."""
    try:
        return build()
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise Unsupported(who_, None, f"a field has an unexpected shape ({type(exc).__name__})") from exc


def who(model: str, kind: str) -> str:
    """How a refusal names the model: ``model 'claude' (anthropic)``."""
    return f"model '{model}' ({kind})"


#: The chat fields every translating provider reads; each provider adds its own and refuses the values it
#: cannot honour.
COMMON_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "presence_penalty",
        "frequency_penalty",
        "modalities",
    }
)


def check_fields(body: Mapping[str, Any], who_: str, handled: frozenset[str], dropped: frozenset[str]) -> None:
    """Every field is either translated or known to be harmless; anything else is refused, never ignored."""
    for key in body:
        if key not in handled and key not in dropped:
            raise Unsupported(who_, key, "this provider has no equivalent, and ignoring it could change the answer")


def refuse_if(value: Any, who_: str, param: str, why: str) -> None:
    """Refuse ``param`` when it asks for something: present, and neither null, false, zero nor empty."""
    if value is not None and value is not False and value != 0 and value != {} and value != []:
        raise Unsupported(who_, param, why)


def refuse_each(body: Mapping[str, Any], who_: str, refusals: Mapping[str, str]) -> None:
    """:func:`refuse_if` for each field of ``refusals`` (field -> why the provider cannot honour it)."""
    for param, why in refusals.items():
        refuse_if(body.get(param), who_, param, why)


def check_single_choice(body: Mapping[str, Any], who_: str) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise Unsupported(who_, "n", "this provider returns one choice per request")


def check_text_modality(body: Mapping[str, Any], who_: str) -> None:
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise Unsupported(who_, "modalities", "only text output is translated")


# --------------------------------------------------------------------------- reading requests


def parts(content: Any, who_: str, where: str) -> list[dict[str, Any]]:
    """A message's content as a list of OpenAI content parts (a string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise Unsupported(who_, where, "content must be a string or an array of content parts")


def text_only(content: Any, who_: str, where: str) -> str:
    """The text of content that may only hold text (system, developer and tool messages)."""
    out: list[str] = []
    for i, part in enumerate(parts(content, who_, where)):
        kind = part.get("type")
        text = part.get(kind) if kind in ("text", "refusal") else None
        if not isinstance(text, str):
            raise Unsupported(who_, f"{where}[{i}]", "only text parts are translated here")
        out.append(text)
    return "".join(out)


def system_text(messages: Iterable[dict[str, Any]], who_: str) -> str:
    """Every system and developer message, in order, joined by a blank line (the upstream has one system prompt)."""
    texts = []
    for i, msg in enumerate(messages):
        if msg.get("role") in ("system", "developer"):
            text = text_only(msg.get("content"), who_, f"messages[{i}].content")
            if text:
                texts.append(text)
    return "\n\n".join(texts)


@dataclass(frozen=True, slots=True)
class DataURL:
    mime: str
    data: str  # base64


def data_url(url: str) -> DataURL | None:
    """A ``data:`` URL's media type and base64 payload; None when ``url`` is not a valid data URL."""
    if not url.startswith("data:"):
        return None
    head, sep, payload = url[5:].partition(",")
    if not sep:
        return None
    fields = head.split(";")
    mime = fields[0].strip().lower() or "text/plain"
    if "base64" in (f.strip().lower() for f in fields[1:]):
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
        return DataURL(mime, payload)
    return DataURL(mime, base64.b64encode(unquote_to_bytes(payload)).decode())


def image_url(part: dict[str, Any], who_: str, where: str) -> str:
    img = part.get("image_url")
    url = img.get("url") if isinstance(img, dict) else img
    if not isinstance(url, str) or not url:
        raise Unsupported(who_, f"{where}.image_url.url", "an image part needs a URL")
    return url


def tool_call_names(messages: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Tool call id -> function name, from the assistant messages' ``tool_calls``."""
    names: dict[str, str] = {}
    for msg in messages:
        for call in msg.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                fn = call.get("function")
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    names[call["id"]] = fn["name"]
    return names


def function_call(call: Any, who_: str, where: str) -> tuple[str, str, dict[str, Any]]:
    """An assistant tool call as (id, name, arguments object)."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or call.get("type", "function") != "function" or not isinstance(fn.get("name"), str):
        raise Unsupported(who_, where, "only function tool calls are translated")
    raw = fn.get("arguments") or "{}"
    try:
        args = jsonutil.loads(raw) if isinstance(raw, str) else raw
    except jsonutil.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise Unsupported(who_, f"{where}.function.arguments", "arguments must be a JSON object")
    return str(call.get("id") or ""), fn["name"], args


def identified_call(call: Any, who_: str, where: str) -> tuple[str, str, dict[str, Any]]:
    """:func:`function_call` for APIs that pair each tool result with its call by id: the id is required."""
    call_id, name, args = function_call(call, who_, where)
    if not call_id:
        raise Unsupported(who_, f"{where}.id", "a tool call needs its id")
    return call_id, name, args


def function_tools(tools: Any, who_: str) -> list[dict[str, Any]]:
    """The ``function`` objects of ``tools``; other tool types are refused."""
    if tools is None:
        return []
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise Unsupported(who_, f"tools[{i}]", "only function tools are translated")
        out.append(fn)
    return out


def forced_function(tool_choice: Any, who_: str) -> str | None:
    """The function a ``tool_choice`` object forces, or None for the string forms."""
    if tool_choice is None or isinstance(tool_choice, str):
        if tool_choice not in (None, "auto", "none", "required"):
            raise Unsupported(who_, "tool_choice", f"unknown value '{tool_choice}'")
        return None
    fn = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise Unsupported(who_, "tool_choice", "only 'auto', 'none', 'required' or one named function")
    return str(fn["name"])


def max_output_tokens(body: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` (the current name) or ``max_tokens`` (the deprecated one)."""
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return value if isinstance(value, int) else None


def stop_sequences(stop: Any, who_: str) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop or None
    raise Unsupported(who_, "stop", "must be a string or an array of strings")


@dataclass(frozen=True, slots=True)
class JSONSchemaFormat:
    name: str
    description: str | None
    schema: dict[str, Any]


def response_format(value: Any, who_: str) -> JSONSchemaFormat | str | None:
    """``response_format`` as a :class:`JSONSchemaFormat`, ``"json_object"``, or None for plain text."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json_object"
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(schema, dict):
            raise Unsupported(who_, "response_format.json_schema.schema", "a JSON schema object is required")
        name, desc = spec.get("name"), spec.get("description")
        return JSONSchemaFormat(
            name=name if isinstance(name, str) and name else "response",
            description=desc if isinstance(desc, str) else None,
            schema=schema,
        )
    raise Unsupported(who_, "response_format", f"unknown type '{kind}'")


def include_usage(body: Mapping[str, Any]) -> bool:
    opts = body.get("stream_options")
    return isinstance(opts, dict) and opts.get("include_usage") is True


def defaults_under(defaults: Mapping[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """``request`` with ``defaults`` filled in underneath, object by object: the request wins on conflict."""
    out = dict(defaults)
    for key, value in request.items():
        below = out.get(key)
        out[key] = defaults_under(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return out


# --------------------------------------------------------------------------- writing answers


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def completion(
    *, id: str, model: str, choices: list[dict[str, Any]], usage: Usage | None, created: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage.to_openai()
    return out


def choice(
    index: int, content: str | None, tool_calls: list[dict[str, Any]], finish_reason: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}


def tool_call(id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


class Chunks:
    """Makes the ``chat.completion.chunk`` dicts of one stream: same id, created and model throughout.

    ``with_usage``: usage was asked for, so, as OpenAI does, every chunk before the usage chunk says
    ``usage: null``."""

    __slots__ = ("created", "id", "model", "role_sent", "with_usage")

    def __init__(self, id: str, model: str, *, with_usage: bool) -> None:
        self.id = id
        self.model = model
        self.created = int(time.time())
        self.with_usage = with_usage
        self.role_sent = False

    def answer(self, delta: dict[str, Any]) -> dict[str, Any]:
        """A chunk of the answer; the first one carries the role. Translations that wait for the first
        content to send the role keep a failure right after the start retryable: nothing went out yet."""
        if not self.role_sent:
            self.role_sent = True
            delta = {"role": "assistant", **delta}
        return self.delta(delta)

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
        out = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if self.with_usage:
            out["usage"] = None
        return out

    def finish(self, reason: str, usage: Usage | None) -> list[dict[str, Any]]:
        """The last chunks: the role if nothing carried it yet, the finish reason, the usage if asked for."""
        out = [] if self.role_sent else [self.answer({"content": ""})]
        out.append(self.delta({}, reason))
        if self.with_usage and usage is not None:
            out.append(self.usage(usage))
        return out

    def usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage.to_openai(),
        }


def count(value: Any) -> int | None:
    """A token count from an upstream usage object: a non-negative integer, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
