"""The caller's output contract, and who honours which field of a pool request.

Members get the caller's body as it was sent (model set per member). When the judge *writes* the answer
(merge, and debate ending in merge), the caller's answer is the judge's words, so the fields that shape
an answer go to that writing call too:

- the output contract: ``response_format``, ``max_tokens`` / ``max_completion_tokens``, ``stop``;
- sampling: ``temperature``, ``top_p``, ``seed``, ``frequency_penalty``, ``presence_penalty``,
  ``logit_bias``, ``reasoning_effort``, ``verbosity``. These override the judge's configured ``params`` for
  the writing call only; verdict calls (best-of, debate's best-of) keep the operator's ``params``, since a
  verdict is the gateway's own question and never reaches the caller.

Fields the written answer cannot honour are refused with a 400 naming the field rather than ignored,
because ignoring them would change the answer: ``logprobs`` / ``top_logprobs`` (they would describe the
judge's tokens, not the members' the caller asked about), audio output, ``prediction``,
``web_search_options`` (the writer does not search; members' citations do not survive a rewrite). ``tools``
are refused by :mod:`gateway.pipeline.plan` for the same reason. Everything else (``user``, ``metadata``,
``service_tier``, ``store`` ...) goes to the members only.

A structured answer is checked before it is returned: a strict ``json_schema`` must validate against the
caller's schema, any other JSON format must parse as JSON (an object for ``json_object``). An answer cut
by the caller's own token limit (``finish_reason: length``) is returned as it is, as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from fusion_modes.base import OutputCheck
from gateway.wire.errors import InvalidRequest

#: fields of the caller's body that the writing judge call receives
WRITER_FIELDS = (
    "response_format",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "reasoning_effort",
    "verbosity",
)

#: what a written answer cannot carry, and why (the 400 says so)
_NOT_FOR_WRITER = {
    "logprobs": "token log probabilities would describe the judge's rewrite, not the members' answers",
    "top_logprobs": "token log probabilities would describe the judge's rewrite, not the members' answers",
    "audio": "the judge writes text",
    "prediction": "a predicted output cannot apply to an answer written from several others",
    "web_search_options": "the judge does not search, and the members' citations do not survive a rewrite",
}


@dataclass(frozen=True)
class WriterContract:
    """What the writing judge call is asked for, and how its answer is checked."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    #: answer text -> what is wrong with it, or None; None when nothing needs checking
    check: OutputCheck | None = None


def writer_contract(pool: str, mode: str, body: Mapping[str, Any]) -> WriterContract:
    """The contract for a request whose answer the judge writes; refuses what it cannot honour."""
    for key, why in _NOT_FOR_WRITER.items():
        if _asked(key, body.get(key)):
            raise _refuse(pool, mode, key, why)
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise _refuse(pool, mode, "modalities", "the judge writes text")
    fields = {k: body[k] for k in WRITER_FIELDS if k in body}
    return WriterContract(fields=fields, check=output_check(body.get("response_format")))


def _asked(key: str, value: Any) -> bool:
    if key == "logprobs":
        return value is True
    return value is not None


def _refuse(pool: str, mode: str, key: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{key}' is not supported when the judge writes the answer (pool '{pool}' runs {mode}): {why}. "
        "Use a best-of pool, or fusion.mode 'best-of'.",
        param=key,
        code="unsupported_for_mode",
    )


def output_check(response_format: Any) -> OutputCheck | None:
    """The check a ``response_format`` implies; None for text. Refuses a malformed one with a 400."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise InvalidRequest("'response_format' must be an object", param="response_format", code="invalid_type")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return _json_object
    if kind != "json_schema":
        raise InvalidRequest(
            "'response_format.type' must be one of text, json_object, json_schema",
            param="response_format.type",
            code="invalid_value",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InvalidRequest(
            "'response_format.json_schema' must be an object with a 'name'",
            param="response_format.json_schema",
            code="invalid_value",
        )
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "'response_format.json_schema.schema' must be an object",
            param="response_format.json_schema.schema",
            code="invalid_type",
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(
            f"'response_format.json_schema.schema' is not a valid JSON Schema: {exc.message}",
            param="response_format.json_schema.schema",
            code="invalid_value",
        ) from exc
    if spec.get("strict") is not True:
        return _json  # without strict, the schema is a wish: the answer must still be JSON
    validator = Draft202012Validator(schema)

    def matches(text: str) -> str | None:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return "it is not JSON"
        error = next(iter(validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"it does not match the schema at {where}: {error.message}"

    return matches


def _json(text: str) -> str | None:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return "it is not JSON"
    return None


def _json_object(text: str) -> str | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "it is not a JSON object"
    return None if isinstance(value, dict) else "it is not a JSON object"
