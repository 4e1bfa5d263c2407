"""compare's trade-off figures: the Pareto frontier and McNemar's paired test."""

from __future__ import annotations

import pytest

from gateway.compare.stats import mcnemar, pareto


def test_pareto_names_the_systems_nothing_beats_on_both_axes() -> None:
    points = {
        "ft": (0.775, 0.000036),
        "best-of-3": (0.954, 0.000233),
        "consensus-3": (0.954, 0.000082),  # as accurate as best-of-3, cheaper: best-of-3 leaves the frontier
        "debate-3": (0.883, 0.000175),  # dearer and less accurate than consensus-3
        "cascade": (0.950, 0.000060),
    }
    assert pareto(points) == ["ft", "consensus-3", "cascade"]
    assert pareto({"a": (0.5, 1.0), "b": (0.5, 1.0)}) == ["a", "b"]  # equal points dominate neither


def test_mcnemar_counts_only_discordant_items() -> None:
    a = [True] * 50 + [True] * 10 + [False] * 2 + [False] * 38 + [None] * 5
    b = [True] * 50 + [False] * 10 + [True] * 2 + [False] * 38 + [True] * 5
    t = mcnemar(a, b)
    assert (t.n, t.a_only, t.b_only) == (100, 10, 2)
    # exact: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert t.p_value == pytest.approx(2 * 79 / 4096)
    assert t.difference == pytest.approx(0.08)
    half = 1.959963984540054 * (12 - 64 / 100) ** 0.5 / 100
    assert t.difference_ci95 == pytest.approx((0.08 - half, 0.08 + half))
    same = mcnemar([True, False], [True, False])
    assert same.p_value == 1.0 and same.difference == 0.0 and same.difference_ci95 == (0.0, 0.0)
