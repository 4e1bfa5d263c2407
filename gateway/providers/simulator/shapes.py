"""Structured answers of the simulated models: a JSON value that fits a JSON schema, deterministically.

A simulated model asked for ``response_format: json_schema`` (or forced to call a tool) answers with a
value generated from the schema: every property present (as strict mode requires), ``$ref`` / ``$defs``
followed, ``enum`` / ``const`` / ``anyOf`` honoured, bounds respected. What the model would have said in
text is carried into it: a number (the right or wrong result of an arithmetic question) goes into the
schema's first numeric field, or its first string field when it has none; other text goes into the first
string field. Every other string is a fixed word, so two models with the same answer give the same JSON.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

_MAX_DEPTH = 8
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "sim@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


class _Filler:
    def __init__(self, root: dict[str, Any], number: Decimal | None, text: str | None, number_as_text: bool) -> None:
        self.root = root
        self.number = number
        self.text = text
        self.number_as_text = number_as_text
        self.placed = False

    def value(self, schema: Any, depth: int = 0) -> Any:
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.value(self._resolve(ref), depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                # prefer a branch that carries content over a bare null
                return self.value(next((o for o in options if _kind(o) != "null"), options[0]), depth + 1)
        kind = _kind(schema)
        if kind == "object" or (kind is None and "properties" in schema):
            props = schema.get("properties") or {}
            return {k: self.value(v, depth + 1) for k, v in props.items()}
        if kind == "array":
            low = schema.get("minItems", 1)
            high = schema.get("maxItems", max(low, 1))
            return [self.value(schema.get("items") or {}, depth + 1) for _ in range(min(max(low, 1), high))]
        if kind in ("integer", "number"):
            return self._number(schema, integer=kind == "integer")
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema)

    def _resolve(self, ref: str) -> Any:
        node: Any = self.root
        if not ref.startswith("#"):
            return {}
        for part in ref.lstrip("#/").split("/"):
            if not part:
                continue
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        return node or {}

    def _number(self, schema: dict[str, Any], *, integer: bool) -> Any:
        number = self.number
        fits = number is not None and (not integer or number == number.to_integral_value())
        if number is not None and fits and not self.number_as_text and not self.placed:
            self.placed = True
            return int(number) if integer else _plain(number)
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = low + 1 if "exclusiveMinimum" in schema and "minimum" not in schema else low
        high = schema.get("maximum")
        if isinstance(high, int | float) and value > high:
            value = high
        return int(value) if integer else value

    def _string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt]
        out = "sim"
        if not self.placed:
            if self.number is not None and self.number_as_text:
                out, self.placed = _text_of(self.number), True
            elif self.number is None and self.text:
                out, self.placed = self.text, True
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if len(out) < low:
            out += "m" * (low - len(out))
        if isinstance(high, int):
            out = out[:high]
        return out


def _kind(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return kind if isinstance(kind, str) else None


def _plain(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _text_of(value: Decimal) -> str:
    return str(_plain(value))


def value_for(schema: dict[str, Any], *, number: Decimal | None = None, text: str | None = None) -> Any:
    """A value that fits ``schema``, carrying ``number`` (preferred) or ``text`` as the module says."""
    filler = _Filler(schema, number, text, number_as_text=False)
    value = filler.value(schema)
    if number is not None and not filler.placed:  # no numeric field: the number goes in as text
        value = _Filler(schema, number, text, number_as_text=True).value(schema)
    return value


def json_object_for(*, number: Decimal | None = None, text: str | None = None) -> dict[str, Any]:
    """``response_format: json_object`` gives no schema: the answer under one key, ``answer``."""
    return {"answer": _plain(number) if number is not None else (text or "")}
