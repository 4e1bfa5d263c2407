"""Datasets in OpenAI's chat fine-tuning format: one ``{"messages": [...]}`` object per line.

The last message, when it is the assistant's, is the reference answer: it is kept for scoring and not
sent. Every bad line is reported (with its line number), not only the first, so a file is fixed in one go.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.wire.protocol import content_text

ROLES = ("system", "developer", "user", "assistant", "tool")
#: keys of a line that are sent along with the messages (the fine-tuning format allows tools)
_PASSED_KEYS = ("tools", "parallel_tool_calls")
#: per-message keys of the fine-tuning format that are training-only and never sent
_TRAINING_ONLY = ("weight",)


class DatasetError(Exception):
    """The dataset cannot be used; ``problems`` holds one message per bad line."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        self.path = path
        self.problems = problems


@dataclass(frozen=True)
class Item:
    line: int
    #: what is sent: the messages without the reference (and without training-only keys)
    messages: list[dict[str, Any]]
    reference: str | None
    #: other request fields the line carried (tools)
    extra: dict[str, Any] = field(default_factory=dict)
    #: stable identity of what is asked: see :func:`item_key`
    key: str = ""

    @property
    def question(self) -> str:
        for msg in reversed(self.messages):
            if msg.get("role") == "user":
                return content_text(msg.get("content"))
        return ""


def item_key(messages: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of what is sent: a changed question gives a new key (and is asked
    again); a changed reference does not (answers are re-scored against the current reference)."""
    canonical = json.dumps({"messages": messages, **extra}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def load_dataset(path: str | Path) -> list[Item]:
    """Parse and check the whole file. Raises :class:`DatasetError` listing every bad line."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(str(path), [f"cannot read {path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(str(path), [f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    lines = raw.splitlines()
    while lines and not lines[-1].strip():  # blank lines at the very end are not items
        lines.pop()
    items: list[Item] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        try:
            item = parse_line(number, text)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        # The same question twice is two items: the n-th repeat gets its own key.
        n = seen.get(item.key, 0)
        seen[item.key] = n + 1
        if n:
            item = Item(item.line, item.messages, item.reference, item.extra, f"{item.key}.{n}")
        items.append(item)
    if not items and not problems:
        problems.append("no items (the file is empty)")
    if problems:
        raise DatasetError(str(path), problems)
    return items


def parse_line(number: int, text: str) -> Item:
    if not text.strip():
        raise ValueError("empty line")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object like {"messages": [...]}')
    messages = data.get("messages")
    if "messages" not in data:
        raise ValueError('no "messages"')
    if not isinstance(messages, list):
        raise ValueError('"messages" is not a list')
    if not messages:
        raise ValueError('"messages" is empty')
    for i, msg in enumerate(messages):
        _check_message(i, msg)
    reference: str | None = None
    prompt = list(messages)
    if prompt[-1]["role"] == "assistant":
        reference = content_text(prompt.pop().get("content")) or None
    if not any(m["role"] == "user" for m in prompt):
        raise ValueError("no user message to send (the last assistant message is the reference, not a question)")
    sent = [{k: v for k, v in m.items() if k not in _TRAINING_ONLY} for m in prompt]
    extra = {k: data[k] for k in _PASSED_KEYS if k in data}
    return Item(line=number, messages=sent, reference=reference, extra=extra, key=item_key(sent, extra))


def _check_message(i: int, msg: Any) -> None:
    if not isinstance(msg, dict):
        raise ValueError(f"messages[{i}] is not an object")
    role = msg.get("role")
    if not isinstance(role, str):
        raise ValueError(f"messages[{i}] has no role")
    if role not in ROLES:
        raise ValueError(f"messages[{i}] has role {role!r} (allowed: {', '.join(ROLES)})")
    content = msg.get("content")
    if isinstance(content, str | list):
        empty = not content.strip() if isinstance(content, str) else not content
        if empty and not msg.get("tool_calls"):
            raise ValueError(f"messages[{i}] ({role}) has empty content")
        return
    if content is None and role == "assistant" and msg.get("tool_calls"):
        return
    raise ValueError(f"messages[{i}] ({role}) has no content")
