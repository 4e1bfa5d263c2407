""" "Did you mean ...?" for a misspelt key or name, from the names that would have been right."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` was most likely meant to be, or None when nothing is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return found[0] if found else None


def unknown(what: str, word: str, choices: Iterable[str]) -> str:
    """``unknown model 'gpt4o' (did you mean 'gpt-4o'? known: gpt-4o, ...)``."""
    names = list(choices)
    guess = closest(word, names)
    known = ", ".join(names) or "none defined"
    hint = f"did you mean '{guess}'? known: {known}" if guess is not None else f"known: {known}"
    return f"unknown {what} '{word}' ({hint})"
