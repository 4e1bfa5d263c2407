"""Consensus: when enough members already give the same answer, no judge is needed.

``agreement: {compare: numeric, min: 2}`` on a pool: as members finish, their answers are grouped by
equivalence; once ``min`` of them fall in one group, that group's first answer is the pool's answer and
the rest of the fan-out is cancelled. What "the same answer" means is a :class:`Comparison`, picked by
name from :data:`COMPARISONS`:

- ``exact``: equal after trimming;
- ``normalized``: equal after case folding, collapsing spaces and dropping punctuation;
- ``numeric``: the last number of each answer, compared as exact decimals (an answer without one
  agrees with nothing);
- ``json``: equal once parsed as JSON (key order and spacing do not matter; invalid JSON agrees with
  nothing);
- ``judge``: the pool's judge is asked a yes/no equivalence question about two answers, a far shorter
  reply than a verdict.

The first four read each answer once and compare keys; ``judge`` compares a new answer with one
representative of each group found so far.
"""

from __future__ import annotations

import abc
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

import anyio
import orjson

from fusion_modes.base import Candidate, Judge, JudgeFailed
from fusion_modes.judge import equivalence_messages, equivalence_response_format, parse_equivalence

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")


def normalize(text: str) -> str:
    """Unicode NFKC, case folded, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def last_number(text: str) -> Decimal | None:
    """The last number written in ``text`` (``1,234`` read as ``1234``), as an exact decimal."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
        return None


#: every comparison's name, declared once: the config checks against it
ComparisonName = Literal["exact", "normalized", "numeric", "json", "judge"]


class Comparison(abc.ABC):
    """When two answers count as the same answer."""

    name: ClassVar[ComparisonName]

    def key(self, text: str) -> str | None:
        """A canonical form: answers with equal keys agree. None: this answer agrees with nothing.

        Comparisons that cannot be reduced to a key (``judge``) return None and override :meth:`same`."""
        return None

    @property
    def keyed(self) -> bool:
        return True

    async def same(self, a: Candidate, b: Candidate, ask: EquivalenceAsk) -> bool:
        ka = self.key(a.text)
        return ka is not None and ka == self.key(b.text)


class Exact(Comparison):
    name = "exact"

    def key(self, text: str) -> str | None:
        return text.strip()


class Normalized(Comparison):
    name = "normalized"

    def key(self, text: str) -> str | None:
        return normalize(text)


class Numeric(Comparison):
    name = "numeric"

    def key(self, text: str) -> str | None:
        value = last_number(text)
        if value is None:
            return None
        # 444, 444.0 and 4.44E+2 are one number
        return format(value.normalize(), "f") if value != 0 else "0"


class Json(Comparison):
    name = "json"

    def key(self, text: str) -> str | None:
        body = text.strip()
        if body.startswith("```"):  # a fenced reply is still JSON
            body = body.split("\n", 1)[1] if "\n" in body else ""
            body = body.rsplit("```", 1)[0]
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


class ByJudge(Comparison):
    name = "judge"

    @property
    def keyed(self) -> bool:
        return False

    async def same(self, a: Candidate, b: Candidate, ask: EquivalenceAsk) -> bool:
        return await ask(a, b)


class EquivalenceAsk:
    """Asks the pool's judge whether two answers are equivalent. A judge failure is a "no": consensus is
    an optimisation, and the full judgement still follows."""

    def __init__(self, judge: Judge | None, conversation: Sequence[dict[str, Any]], max_chars: int) -> None:
        self._judge = judge
        self._conversation = conversation
        self._max_chars = max_chars
        self.calls = 0
        self.failures: list[str] = []

    async def __call__(self, a: Candidate, b: Candidate) -> bool:
        if self._judge is None:
            return False
        messages = equivalence_messages(self._conversation, a, b, self._max_chars)
        if messages is None:
            return False
        self.calls += 1
        try:
            raw = await self._judge.verdict(messages, equivalence_response_format())
            return parse_equivalence(raw)
        except JudgeFailed as exc:
            self.failures.append(exc.reason)
            return False


COMPARISONS: Mapping[str, Comparison] = {
    c.name: c for c in (Exact(), Normalized(), Numeric(), Json(), ByJudge())
}


@dataclass
class Consensus:
    """``min`` or more members agreed: ``agreed`` in the order they finished."""

    compare: str
    min: int
    agreed: list[Candidate]

    @property
    def answer(self) -> Candidate:
        return self.agreed[0]


@dataclass
class Agreement:
    """Groups answers by equivalence as they arrive; :attr:`consensus` is set once ``min`` agree."""

    comparison: Comparison
    min: int
    ask: EquivalenceAsk
    groups: list[list[Candidate]] = field(default_factory=list)
    consensus: Consensus | None = None
    _keys: dict[str, list[Candidate]] = field(default_factory=dict)
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def add(self, candidate: Candidate) -> Consensus | None:
        """Add one finished answer; the consensus if this answer completes one."""
        async with self._lock:  # judge comparisons await: one answer is placed at a time
            if self.consensus is not None:
                return self.consensus
            group = await self._place(candidate)
            if group is not None and len(group) >= self.min:
                self.consensus = Consensus(self.comparison.name, self.min, list(group))
            return self.consensus

    async def _place(self, candidate: Candidate) -> list[Candidate] | None:
        if self.comparison.keyed:
            key = self.comparison.key(candidate.text)
            if key is None:
                return None
            group = self._keys.setdefault(key, [])
            if not group:
                self.groups.append(group)
            group.append(candidate)
            return group
        for group in self.groups:
            if await self.comparison.same(group[0], candidate, self.ask):
                group.append(candidate)
                return group
        self.groups.append([candidate])
        return self.groups[-1]
