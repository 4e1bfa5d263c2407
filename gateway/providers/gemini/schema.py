"""JSON Schema (as OpenAI takes it) -> Gemini's ``Schema``, a subset of OpenAPI 3.0.

Kept: ``type`` (upper-cased; a list with "null" becomes ``nullable``), ``properties`` (plus
``propertyOrdering`` in the order written, so "analysis" stays before "winner"), ``required``, ``items``,
string ``enum`` (and a string ``const``), ``anyOf``/``oneOf`` (as ``anyOf``), ``description``, ``format``,
``nullable``, ``minItems``/``maxItems``, ``minimum``/``maximum``, ``minLength``/``maxLength``.
Local ``$ref``s into ``$defs``/``definitions`` are inlined; a recursive one is refused.
Everything else (``additionalProperties``, ``strict``, ``$schema``, ``title``, ``default``, ``pattern``,
non-string enums ...) is dropped: the schema still constrains the answer's shape, and the gateway's own
strict parsing checks what matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.providers.translate import Unsupported

_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})
_COPIED = ("description", "format", "nullable", "minItems", "maxItems", "minimum", "maximum", "minLength", "maxLength")


def to_gemini_schema(schema: Mapping[str, Any], who: str, param: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": s for name, s in schema[key].items()})
    return _Converter(defs, who, param).node(schema, ())


class _Converter:
    def __init__(self, defs: dict[str, Any], who: str, param: str) -> None:
        self._defs = defs
        self._who = who
        self._param = param

    def _refuse(self, why: str) -> Unsupported:
        return Unsupported(self._who, self._param, why)

    def node(self, node: Any, refs: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise self._refuse("every schema node must be an object")
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in refs:
                raise self._refuse(f"'{ref}' is recursive; Gemini's schema has no references")
            target = self._defs.get(ref)
            if target is None:
                raise self._refuse(f"'{ref}' does not point into $defs")
            return self.node(target, (*refs, ref))

        out: dict[str, Any] = {}
        kind = node.get("type")
        if isinstance(kind, list):
            real = [k for k in kind if k != "null"]
            if len(real) != len(kind):
                out["nullable"] = True
            if len(real) == 1:
                kind = real[0]
            else:
                out["anyOf"] = [{"type": self._type(k)} for k in real]
                kind = None
        if isinstance(kind, str):
            out["type"] = self._type(kind)
        for key in _COPIED:
            if key in node:
                out[key] = node[key]

        values = node.get("enum")
        if values is None and isinstance(node.get("const"), str):
            values = [node["const"]]
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            out["enum"] = values
            out.setdefault("type", "STRING")

        props = node.get("properties")
        if isinstance(props, dict) and props:
            out["properties"] = {name: self.node(sub, refs) for name, sub in props.items()}
            out["propertyOrdering"] = list(props)
            required = node.get("required")
            if isinstance(required, list):
                out["required"] = [r for r in required if r in props]
        if "items" in node:
            out["items"] = self.node(node["items"], refs)

        branches = node.get("anyOf", node.get("oneOf"))
        if isinstance(branches, list):
            kept = []
            for b in branches:
                if isinstance(b, dict) and b.get("type") == "null":
                    out["nullable"] = True
                else:
                    kept.append(self.node(b, refs))
            if len(kept) == 1 and "type" not in out:
                out.update(kept[0])
            elif kept:
                out["anyOf"] = kept
        return out

    def _type(self, kind: Any) -> str:
        if kind not in _TYPES:
            raise self._refuse(f"type '{kind}' has no Gemini equivalent")
        return str(kind).upper()
