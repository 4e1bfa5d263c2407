"""Scoring an answer against the reference.

- ``exact``: equal after trimming surrounding whitespace.
- ``normalized``: equal after Unicode NFKC, case folding, removing punctuation and collapsing whitespace.
- ``numeric``: the last number in the answer equals the last number in the reference, compared as exact
  decimals (``444`` = ``444.0``; thousands separators ``1,234`` are read as ``1234``).
- ``contains``: the reference, normalized as above, appears in the normalized answer.
- ``regex:<pattern>``: the answer matches the pattern (``re.search``); needs no reference.

A score is True, False, or None when the item cannot be scored (no reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fusion_modes.agreement import last_number, normalize

NAMES = ("exact", "normalized", "numeric", "contains", "regex:<pattern>")


@dataclass(frozen=True)
class Scorer:
    name: str
    pattern: re.Pattern[str] | None = None

    @property
    def needs_reference(self) -> bool:
        return self.pattern is None

    @property
    def label(self) -> str:
        return f"regex:{self.pattern.pattern}" if self.pattern is not None else self.name

    def check_reference(self, reference: str | None) -> str | None:
        """Why this reference cannot be scored against, or None."""
        if self.name == "numeric" and reference is not None and last_number(reference) is None:
            return "the reference answer has no number (scorer numeric)"
        return None

    def score(self, answer: str | None, reference: str | None) -> bool | None:
        if self.pattern is not None:
            return answer is not None and self.pattern.search(answer) is not None
        if reference is None:
            return None
        if answer is None:
            return False
        if self.name == "exact":
            return answer.strip() == reference.strip()
        if self.name == "normalized":
            return normalize(answer) == normalize(reference)
        if self.name == "contains":
            return normalize(reference) in normalize(answer)
        want = last_number(reference)
        got = last_number(answer)
        return want is not None and got is not None and got == want


def parse_scorer(text: str) -> Scorer:
    """``exact``, ``normalized``, ``numeric``, ``contains`` or ``regex:<pattern>``; ValueError otherwise."""
    if text.startswith("regex:"):
        source = text[len("regex:") :]
        if not source:
            raise ValueError("regex scorer needs a pattern: regex:<pattern>")
        try:
            return Scorer("regex", re.compile(source))
        except re.error as exc:
            raise ValueError(f"bad regex {source!r}: {exc}") from None
    if text in ("exact", "normalized", "numeric", "contains"):
        return Scorer(text)
    raise ValueError(f"unknown scorer {text!r} (choose from: {', '.join(NAMES)})")
