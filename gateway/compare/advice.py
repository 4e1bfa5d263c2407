"""What to tell the user when the figures say more about the set-up than about the systems.

Every system at 0% right is almost never the truth: the usual cause is a scorer that does not fit the
references (``normalized`` asks for the whole answer to equal "The answer is 2979.", while a model shows
its working first). The recorded answers are re-scored with each other scorer, and the one that finds
the most right answers is suggested; a rerun with it re-scores without sending anything again.
"""

from __future__ import annotations

from gateway.compare.runner import Runner
from gateway.compare.scoring import Scorer
from gateway.compare.summary import tally

#: scorers that compare with the reference (regex needs a pattern only the user can write)
CANDIDATES = ("numeric", "contains", "normalized", "exact")


def all_wrong_warning(runner: Runner, scorer: Scorer) -> str | None:
    """A warning when every system scored 0 right out of something, else None."""
    systems = runner.plan.systems
    tallies = [tally(runner, s, scorer) for s in systems]
    if not any(scored for _, scored in tallies) or any(correct for correct, _ in tallies):
        return None
    head = f"every system scored 0% with --scorer {scorer.label}"
    best: tuple[float, float, str] | None = None
    for name in CANDIDATES:
        other = Scorer(name)
        if name == scorer.label or any(other.check_reference(i.reference) for i in runner.plan.items):
            continue
        rates = [c / n for c, n in (tally(runner, s, other) for s in systems) if n]
        if rates and max(rates) > 0 and (best is None or max(rates) > best[1]):
            best = (min(rates), max(rates), name)
    if best is None:
        return (
            f"{head}, and no other scorer finds a right answer either: check the reference answers (the last "
            "assistant message of each line), or match answers with --scorer regex:<pattern>"
        )
    low, high, name = best
    spread = f"{100 * low:.0f}%" if round(100 * low) == round(100 * high) else f"{100 * low:.0f}-{100 * high:.0f}%"
    return (
        f"{head}: the answers may be right but worded differently from the references. With --scorer {name} "
        f"they score {spread}: run the same command with --scorer {name} (answers already in are re-scored, "
        "not asked again)"
    )
