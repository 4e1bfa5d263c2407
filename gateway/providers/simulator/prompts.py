"""How the simulated models read the prompts the gateway's judge and debate send them.

A real model reads these prompts as text; so does the simulator, from the outside: it knows the
published marker format (``<<<KIND label nonce>>>`` ... ``<<<END KIND label nonce>>>``) and the verdict
schema's name, not the code that writes them. ``tests/test_judge.py`` checks that prompts built by
:mod:`fusion_modes` are read back here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_BLOCK = re.compile(
    r"<<<(?P<kind>[A-Z]+) (?P<label>[A-Za-z0-9]+) (?P<nonce>[0-9a-f]{32})>>>\n"
    r"(?P<body>.*?)\n<<<END (?P=kind) (?P=label) (?P=nonce)>>>",
    re.DOTALL,
)
#: the names of the JSON schemas a judge is asked to answer with: a verdict, a yes/no equivalence
#: question (consensus), a confidence score (a cascade's check), a comparison of the panel (a merge
#: that shows its work)
VERDICT_SCHEMA_NAME = "fusion_verdict"
EQUIVALENCE_SCHEMA_NAME = "fusion_equivalence"
CONFIDENCE_SCHEMA_NAME = "fusion_confidence"
ANALYSIS_SCHEMA_NAME = "fusion_analysis"


@dataclass(frozen=True, slots=True)
class Block:
    kind: str
    label: str
    nonce: str
    body: str


def blocks(text: str, kind: str) -> list[Block]:
    """Every well-formed block of one kind in ``text``, in order."""
    return [
        Block(m.group("kind"), m.group("label"), m.group("nonce"), m.group("body"))
        for m in _BLOCK.finditer(text)
        if m.group("kind") == kind
    ]


@dataclass(frozen=True)
class JudgeTask:
    nonce: str
    candidates: list[Block]
    conversation: str
    wants_verdict: bool
    #: what kind of answer the prompt asks for: verdict, equivalence, confidence, analysis, or free text
    asks: str = "text"
    #: a merge written from an analysis: the analysis block's body (the JSON the judge wrote before)
    notes: str | None = None


def _schema_name(response_format: Any) -> str | None:
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"), dict):
        name = response_format["json_schema"].get("name")
        return name if isinstance(name, str) else None
    return None


def _asks(response_format: Any, system: str) -> str:
    """Read from the schema's name when there is one, else from the reply format the system prompt shows."""
    name = _schema_name(response_format)
    if name == VERDICT_SCHEMA_NAME or (name is None and '"winner"' in system):
        return "verdict"
    if name == EQUIVALENCE_SCHEMA_NAME or (name is None and '"equivalent"' in system):
        return "equivalence"
    if name == CONFIDENCE_SCHEMA_NAME or (name is None and '"confidence"' in system):
        return "confidence"
    if name == ANALYSIS_SCHEMA_NAME or (name is None and '"contradictions"' in system):
        return "analysis"
    return "text"


def read_judge_task(messages: Sequence[dict[str, Any]], response_format: Any) -> JudgeTask | None:
    """If ``messages`` is a judge prompt, what it asks; else None."""
    if not messages or not isinstance(messages[-1].get("content"), str):
        return None
    text: str = messages[-1]["content"]
    found = blocks(text, "CANDIDATE")
    conv = blocks(text, "CONVERSATION")
    if not found or not conv:
        return None
    nonce = conv[0].nonce
    system = messages[0].get("content") if messages[0].get("role") == "system" else ""
    asks = _asks(response_format, system if isinstance(system, str) else "")
    notes = [b.body for b in blocks(text, "ANALYSIS") if b.nonce == nonce]
    return JudgeTask(
        nonce=nonce,
        candidates=[b for b in found if b.nonce == nonce],
        conversation=conv[0].body,
        wants_verdict=asks == "verdict",
        asks=asks,
        notes=notes[0] if notes else None,
    )


@dataclass(frozen=True)
class DebateTask:
    own: str
    others: list[Block]


def read_debate_task(messages: Sequence[dict[str, Any]]) -> DebateTask | None:
    """If ``messages`` is a debate revision prompt, its parts; else None."""
    if len(messages) < 3 or messages[-2].get("role") != "assistant":
        return None
    last = messages[-1].get("content")
    if messages[-1].get("role") != "user" or not isinstance(last, str):
        return None
    found = blocks(last, "ANSWER")
    if not found:
        return None
    own = messages[-2].get("content")
    return DebateTask(own=own if isinstance(own, str) else "", others=found)
