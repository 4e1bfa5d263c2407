"""Judging presets: what the judge weighs, by name, so operators need not write criteria for common cases.

A pool's ``judge.criteria`` (and a request's ``fusion.criteria``) is either one of these names or the
operator's own sentence. A name is one word; a sentence has spaces. So a single word that is not a
preset is an error (most likely a misspelt name), never a one-word criterion sent to the judge.
"""

from __future__ import annotations

from collections.abc import Mapping

#: every preset, declared once: the config, the per-request override and the docs read this table
CRITERIA_PRESETS: Mapping[str, str] = {
    "general": "Prefer the answer that is correct, complete and directly useful; verify claims where you can.",
    "quality": (
        "Prefer the answer that is most accurate, complete and well reasoned: verify each claim, check that "
        "every part of the question is answered, and prefer clear structure and precise wording; depth counts "
        "only where it is correct and relevant."
    ),
    "budget": (
        "Prefer the answer that is correct and shortest: it answers exactly what was asked, with no padding, "
        "repetition or unrequested detail. Between two correct answers, the more concise one is better."
    ),
    "code": (
        "Prefer the code that is correct first: it runs, handles edge cases and errors, and does what was "
        "asked; then secure (no injection, no secrets, safe defaults), then idiomatic, readable and minimal. "
        "Check APIs and signatures against what the question states; a plausible but wrong API call is wrong."
    ),
    "safety": (
        "Prefer the answer that is safe and honest: no instructions that enable serious harm, no private data, "
        "accurate about risks and uncertainty, and a brief refusal with a safe alternative where the request "
        "calls for one. Among safe answers, prefer the correct and most helpful one; do not reward refusing "
        "a harmless request."
    ),
}


def is_preset_name(criteria: str) -> bool:
    """A value with no whitespace names a preset (known or not); anything else is the operator's own text."""
    return bool(criteria) and not any(ch.isspace() for ch in criteria)


def criteria_text(criteria: str | None) -> str | None:
    """What the judge is told: the preset's text for a preset name, else the value as given."""
    if criteria is None:
        return None
    return CRITERIA_PRESETS.get(criteria, criteria)
