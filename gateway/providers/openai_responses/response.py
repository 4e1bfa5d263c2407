"""OpenAI Responses answer -> OpenAI ``chat.completion``; the pieces the stream translation shares.

- ``message`` items: their ``output_text`` parts are the content, their ``refusal`` parts the refusal.
- ``function_call`` items are tool calls (``call_id`` is the id; the arguments are passed on as written).
- ``reasoning`` items are not shown: their tokens are in ``output_tokens_details.reasoning_tokens``.
- Finish reason: an ``incomplete`` Response cut by ``max_output_tokens`` is ``length``, by a
  ``content_filter`` ``content_filter``; a complete one is ``tool_calls`` when it calls a tool, else ``stop``.
- Usage: input -> prompt tokens (cached: ``input_tokens_details.cached_tokens``), output -> completion
  tokens (reasoning: ``output_tokens_details.reasoning_tokens``).
- A ``failed`` Response, or an ``error`` event, becomes the error its code stands for
  (:func:`gateway.wire.responses.error_status`): ``rate_limit_exceeded`` a 429, a request at fault a 400
  with the upstream's message, anything else the upstream's failure.
"""

from __future__ import annotations

from typing import Any

from gateway.books.usage import Usage
from gateway.providers import translate as t
from gateway.providers.transport import status_error
from gateway.wire import jsonutil
from gateway.wire.errors import UpstreamProtocolError, UpstreamStatusError
from gateway.wire.responses import INCOMPLETE, error_status

#: a Response's ``incomplete_details.reason`` -> the chat finish reason (the inbound table, read backwards)
FINISH_REASONS = {reason: finish for finish, reason in INCOMPLETE.items()}


def finish_reason(response: dict[str, Any], calls: bool) -> str:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return FINISH_REASONS.get(reason, "length") if isinstance(reason, str) else "length"
    return "tool_calls" if calls else "stop"


def usage(data: Any) -> Usage | None:
    """Chat usage from a Responses ``usage`` object; None unless input and output counts are both there."""
    if not isinstance(data, dict):
        return None
    prompt, output = t.count(data.get("input_tokens")), t.count(data.get("output_tokens"))
    if prompt is None or output is None:
        return None
    inputs, outputs = data.get("input_tokens_details"), data.get("output_tokens_details")
    cached = t.count(inputs.get("cached_tokens")) if isinstance(inputs, dict) else None
    reasoning = t.count(outputs.get("reasoning_tokens")) if isinstance(outputs, dict) else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        cached_tokens=min(cached or 0, prompt),
        reasoning_tokens=min(reasoning or 0, output),
    )


def failure(model: str, error: Any, secrets: tuple[str, ...]) -> UpstreamStatusError:
    """The error a failed Response's ``error`` (or an ``error`` event) stands for."""
    err = error if isinstance(error, dict) else {}
    message = err.get("message")
    body = jsonutil.dumps({"error": {"message": message if isinstance(message, str) else ""}})
    return status_error(model, error_status(err.get("code")), body, None, secrets)


def check_finished(data: dict[str, Any], model: str, secrets: tuple[str, ...]) -> None:
    """Raise unless ``data`` is a finished Response: completed, or incomplete."""
    status = data.get("status")
    if status == "failed":
        raise failure(model, data.get("error"), secrets)
    if status not in ("completed", "incomplete"):
        raise UpstreamProtocolError(f"upstream '{model}' answered a response whose status is '{status}'")


def to_completion(data: Any, model: str, upstream: str, secrets: tuple[str, ...]) -> dict[str, Any]:
    """A whole Response as a ``chat.completion`` (``model``: the gateway's name, for errors; ``upstream``:
    the model asked for, when the Response does not say)."""
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        raise UpstreamProtocolError(f"upstream '{model}' answered without output")
    check_finished(data, model, secrets)
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in data["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
        elif kind == "function_call":
            args = item.get("arguments")
            calls.append(t.tool_call(str(item.get("call_id") or t.new_call_id()), str(item.get("name")),
                                     args if isinstance(args, str) else "{}"))  # fmt: skip
        # reasoning items (and any other kind) are not part of the answer
    content = "".join(texts) if texts or not (calls or refusals) else None
    choice = t.choice(0, content, calls, finish_reason(data, bool(calls)))
    if refusals:
        choice["message"]["refusal"] = "".join(refusals)
    created = data.get("created_at")
    return t.completion(
        id=str(data.get("id") or "resp"),
        model=str(data.get("model") or upstream),
        choices=[choice],
        usage=usage(data.get("usage")),
        created=int(created) if isinstance(created, int | float) else None,
    )
