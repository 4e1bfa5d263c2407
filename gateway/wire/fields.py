"""The JSON types of the standard chat completion fields, as one precomputed table.

Taken from the official description (``CreateChatCompletionRequest`` in OpenAI's OpenAPI document,
v2.3.0; ``tests/test_request_schema.py`` holds this table to it). A request that breaks it is refused
with a 400 naming the ``param`` before any upstream call: for a pool that is N+1 calls not wasted.

Only types and the properties the spec requires are checked, not enums or ranges: those grow with
every model release and differ between providers, and a passthrough must not refuse what a newer
upstream accepts. ``null`` is accepted everywhere (upstreams read it as "not set"). Fields the table
does not know pass through unchanged.

Cost: one dict lookup per top-level field and a ``type(v) in frozenset`` test per checked value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.wire.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Shape:
    """What one JSON value may be. ``types`` are exact Python types as the JSON parser makes them
    (so ``True`` is not an integer), ``what`` says it in the error message."""

    types: frozenset[type]
    what: str
    items: Shape | None = None  # for arrays: every item
    fields: Mapping[str, Shape] = field(default_factory=dict)  # for objects: these keys, when present
    required: tuple[str, ...] = ()  # for objects

    def fits(self, value: Any) -> bool:
        """Cheap first look: True when ``value`` is of an accepted type and there is nothing inside it to
        check (the common case, which then costs no error path string)."""
        return type(value) in self.types and (type(value) is str or not (self.items or self.fields or self.required))

    def check(self, value: Any, param: str) -> None:
        if type(value) not in self.types:
            raise InvalidRequest(f"'{param}' must be {self.what}", param=param, code="invalid_type")
        if self.items is not None and type(value) is list:
            for i, item in enumerate(value):
                self.items.check(item, f"{param}[{i}]")
        elif type(value) is dict:
            for name in self.required:
                if value.get(name) is None:
                    p = f"{param}.{name}"
                    raise InvalidRequest(f"'{p}' is a required property", param=p, code="missing_required")
            for name, shape in self.fields.items():
                v = value.get(name)
                if v is not None:
                    shape.check(v, f"{param}.{name}")


def _obj(fields: Mapping[str, Shape] | None = None, required: tuple[str, ...] = ()) -> Shape:
    return Shape(frozenset({dict}), "an object", fields=fields or {}, required=required)


def _array(items: Shape | None = None) -> Shape:
    return Shape(frozenset({list}), "an array", items=items)


STRING = Shape(frozenset({str}), "a string")
INTEGER = Shape(frozenset({int}), "an integer")
NUMBER = Shape(frozenset({int, float}), "a number")
BOOLEAN = Shape(frozenset({bool}), "a boolean")
OBJECT = _obj()
STRING_OR_OBJECT = Shape(frozenset({str, dict}), "a string or an object")
STRING_OR_ARRAY = Shape(frozenset({str, list}), "a string or an array of strings", items=STRING)
CONTENT = Shape(
    frozenset({str, list}),
    "a string or an array of content parts",
    items=_obj({"type": STRING}, required=("type",)),
)

FUNCTION_CALL = _obj({"name": STRING, "arguments": STRING}, required=("name",))
TOOL_CALLS = _array(_obj({"id": STRING, "type": STRING, "function": FUNCTION_CALL, "custom": OBJECT}))
FUNCTION = _obj({"name": STRING, "description": STRING, "parameters": OBJECT, "strict": BOOLEAN}, required=("name",))

#: Top-level fields (``model``, ``messages``, ``stream`` and ``stream_options`` are checked by the parser).
FIELDS: dict[str, Shape] = {
    "audio": OBJECT,
    "frequency_penalty": NUMBER,
    "function_call": Shape(frozenset({str, dict}), "a string or an object", fields={"name": STRING}),
    "functions": _array(FUNCTION),
    "logit_bias": OBJECT,
    "logprobs": BOOLEAN,
    "max_completion_tokens": INTEGER,
    "max_tokens": INTEGER,
    "metadata": OBJECT,
    "modalities": _array(STRING),
    "moderation": OBJECT,
    "n": INTEGER,
    "parallel_tool_calls": BOOLEAN,
    "prediction": _obj({"type": STRING}, required=("type",)),
    "presence_penalty": NUMBER,
    "prompt_cache_key": STRING,
    "prompt_cache_options": OBJECT,
    "prompt_cache_retention": STRING,
    "reasoning_effort": STRING,
    "response_format": _obj({"type": STRING, "json_schema": OBJECT}, required=("type",)),
    "safety_identifier": STRING,
    "seed": INTEGER,
    "service_tier": STRING,
    "stop": STRING_OR_ARRAY,
    "store": BOOLEAN,
    "temperature": NUMBER,
    "tool_choice": STRING_OR_OBJECT,
    "tools": _array(_obj({"type": STRING, "function": FUNCTION, "custom": OBJECT}, required=("type",))),
    "top_logprobs": INTEGER,
    "top_p": NUMBER,
    "user": STRING,
    "verbosity": STRING,
    "web_search_options": OBJECT,
}

#: Fields of one message, whatever its role.
MESSAGE_FIELDS: dict[str, Shape] = {
    "content": CONTENT,
    "name": STRING,
    "tool_calls": TOOL_CALLS,
    "tool_call_id": STRING,
    "function_call": FUNCTION_CALL,
    "refusal": STRING,
    "audio": OBJECT,
}
