"""A simulated model asked for structured output answers JSON of the requested shape.

``response_format: json_schema`` gets an instance of the schema: every property filled in (``required``
or not, as strict schemas list them all), the first ``enum`` value or ``anyOf`` branch that is not
null, local ``$ref``s followed; strings carry a deterministic word, numbers a deterministic value.
``json_object`` gets an object holding the answer text.
"""

from __future__ import annotations

import random
from typing import Any

_MAX_DEPTH = 8


def instance(schema: dict[str, Any], rng: random.Random) -> Any:
    """A value valid against ``schema`` (within the subset structured outputs use)."""
    return _value(schema, schema, rng, 0)


def _value(node: Any, root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return None
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key) if isinstance(target, dict) else None
        return _value(target, root, rng, depth + 1)
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = node.get(key)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")] or branches
            return _value(usable[0], root, rng, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in node):
        props = node.get("properties") or {}
        return {name: _value(sub, root, rng, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [_value(node.get("items") or {}, root, rng, depth + 1)]
    if kind == "string":
        return rng.choice(("alpha", "bravo", "charlie", "delta"))
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(1, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return None
