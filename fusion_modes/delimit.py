"""Untrusted text as data: each piece between markers that carry a random per-request nonce.

This is "spotlighting" (Hines et al. 2024): the model is told that only markers with this request's
nonce are real, the nonce is unguessable, and marker-like sequences inside the text are defused so a
candidate cannot close its own block and speak as the gateway.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_OPEN = "<<<"
_CLOSE = ">>>"
# Look-alikes that read the same to a model but can never form a marker.
_DEFUSED_OPEN = "\u2039\u2039\u2039"
_DEFUSED_CLOSE = "\u203a\u203a\u203a"

_BLOCK = re.compile(
    r"<<<(?P<kind>[A-Z]+) (?P<label>[A-Za-z0-9]+) (?P<nonce>[0-9a-f]{32})>>>\n"
    r"(?P<body>.*?)\n<<<END (?P=kind) (?P=label) (?P=nonce)>>>",
    re.DOTALL,
)


def new_nonce() -> str:
    return secrets.token_hex(16)


def defuse(text: str) -> str:
    return text.replace(_OPEN, _DEFUSED_OPEN).replace(_CLOSE, _DEFUSED_CLOSE)


def cap(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + "\n[... cut by the gateway: answer longer than the judge's limit]"


def wrap(kind: str, label: str, nonce: str, text: str) -> str:
    return f"{_OPEN}{kind} {label} {nonce}{_CLOSE}\n{defuse(text)}\n{_OPEN}END {kind} {label} {nonce}{_CLOSE}"


@dataclass(frozen=True, slots=True)
class Block:
    kind: str
    label: str
    nonce: str
    body: str


def blocks(text: str, kind: str | None = None) -> list[Block]:
    """Every well-formed block in ``text`` (optionally of one kind), in order."""
    out = []
    for m in _BLOCK.finditer(text):
        if kind is None or m.group("kind") == kind:
            out.append(Block(m.group("kind"), m.group("label"), m.group("nonce"), m.group("body")))
    return out
