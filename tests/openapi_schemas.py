"""Validation against the official OpenAI schemas copied into ``tests/schemas/openai.json``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_PATH = Path(__file__).parent / "schemas" / "openai.json"
_URI = "urn:openai"


@cache
def _registry() -> Registry[Any]:
    doc = json.loads(_PATH.read_text())
    return Registry().with_resource(_URI, Resource.from_contents(doc, default_specification=DRAFT202012))


_DRAFT = jsonschema.Draft202012Validator


def _one_of(validator: Any, one_of: Any, instance: Any, schema: dict[str, Any]) -> Any:
    """``oneOf``, except under an OpenAPI ``discriminator``: there the discriminating property names the
    branch, so the instance must match one branch, not exactly one. Without this, a user message with
    content parts would be refused as input: it is both an ``EasyInputMessage`` and an ``InputMessage``."""
    if "discriminator" in schema:
        yield from _DRAFT.VALIDATORS["anyOf"](validator, one_of, instance, schema)
    else:
        yield from _DRAFT.VALIDATORS["oneOf"](validator, one_of, instance, schema)


_Validator = jsonschema.validators.extend(_DRAFT, {"oneOf": _one_of})


def validate(obj: Any, schema: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``obj`` is valid against ``components.schemas.<schema>``."""
    validator = _Validator({"$ref": f"{_URI}#/components/schemas/{schema}"}, registry=_registry())
    validator.validate(obj)


@cache
def _event_schemas() -> dict[str, str]:
    """Responses stream event ``type`` -> the name of its schema in the official ``ResponseStreamEvent`` union."""
    schemas = json.loads(_PATH.read_text())["components"]["schemas"]
    out = {}
    for ref in schemas["ResponseStreamEvent"]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[-1]
        out[schemas[name]["properties"]["type"]["enum"][0]] = name
    return out


def validate_event(event: dict[str, Any]) -> None:
    """A Responses stream event, against the schema of its own type (clearer errors than the whole union)."""
    name = _event_schemas().get(event.get("type", ""))
    assert name is not None, f"not an event type of the official stream: {event.get('type')!r}"
    validate(event, name)
