"""compare's trade-off figures: the Pareto frontier and McNemar's paired test."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from gateway.compare.report_html import chart_pareto, colours, render_html
from gateway.compare.stats import mcnemar, pareto
from gateway.compare.summary import frontiers


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


def _summary(points: dict[str, tuple[float, str, float]]) -> dict[str, Any]:
    """The parts of summary.json the frontier charts read: (accuracy, mean cost, p50) per system."""
    systems = {
        name: {"accuracy": acc, "cost": {"mean_usd": cost}, "latency_ms": {"p50": p50, "n": 240}}
        for name, (acc, cost, p50) in points.items()
    }
    return {"systems": systems, "pareto": frontiers(systems)}


def _circles(svg: str) -> dict[str, str]:
    """data-system -> class of every point drawn."""
    return {m.group(2): m.group(1) for m in re.finditer(r'<circle [^>]*class="(\w+)"[^>]*data-system="([^"]+)"', svg)}


def test_the_report_draws_both_frontiers_and_names_the_systems_on_them() -> None:
    s = _summary(
        {
            "sim-ft": (0.775, "0.000036", 308.0),
            "best-of-3": (0.954, "0.000233", 1127.0),  # beaten by consensus-3 on both axes
            "consensus-3": (0.954, "0.000082", 470.0),
            "cascade-ft": (0.946, "0.000106", 394.0),  # dearer than consensus-3, but faster
            "cascade-judge": (0.975, "0.000125", 592.0),
        }
    )
    col = colours({"baseline": "sim-ft", "pools": [n for n in s["systems"] if n != "sim-ft"]})
    cost = chart_pareto(s, col, "accuracy_vs_cost")
    p50 = chart_pareto(s, col, "accuracy_vs_p50")
    assert cost is not None and p50 is not None
    (cost_svg, cost_front), (p50_svg, p50_front) = cost, p50
    assert cost_front == ["sim-ft", "consensus-3", "cascade-judge"]  # cheapest first
    assert p50_front == ["sim-ft", "cascade-ft", "consensus-3", "cascade-judge"]  # fastest first
    assert _circles(cost_svg) == {
        "sim-ft": "frontier", "consensus-3": "frontier", "cascade-judge": "frontier",
        "best-of-3": "dominated", "cascade-ft": "dominated",
    }
    assert {n for n, c in _circles(p50_svg).items() if c == "frontier"} == set(p50_front)
    # The staircase climbs from the cheapest system to the most accurate one: x never decreases, y (pixels)
    # never increases, and it runs through every frontier point.
    (points,) = re.findall(r'<polyline points="([^"]+)"[^>]*class="frontier"', cost_svg)
    xy = [tuple(map(float, p.split(","))) for p in points.split()]
    assert all(a[0] <= b[0] and a[1] >= b[1] for a, b in itertools.pairwise(xy))
    centres = {m.group(3): (float(m.group(1)), float(m.group(2))) for m in re.finditer(
        r'<circle cx="([\d.]+)" cy="([\d.]+)"[^>]*class="frontier"[^>]*data-system="([^"]+)"', cost_svg)}
    assert set(centres) == set(cost_front) and all(c in xy for c in centres.values())

    html = render_html_page(s)
    caption = re.search(r'data-frontier="chart-pareto-cost">(.*?)</figcaption>', html)
    assert caption is not None and "<strong>sim-ft, consensus-3, cascade-judge</strong>" in caption.group(1)
    assert "at least as accurate and cheaper" in caption.group(1)
    assert '<strong>sim-ft, cascade-ft, consensus-3, cascade-judge</strong>' in html


def render_html_page(s: dict[str, Any]) -> str:
    """A whole report around the two systems' figures, through the real page builder."""
    full = {
        "dataset": "d.jsonl", "items": 240, "scorer": "numeric", "judge": None, "gateway": "http://x",
        "baseline": "sim-ft", "pools": [n for n in s["systems"] if n != "sim-ft"], "comparisons": [],
        "baseline_training_usd": None, "warnings": [], "command": None,
        "systems": {
            n: {**f, "accuracy_ci95": [f["accuracy"] - 0.03, min(1.0, f["accuracy"] + 0.03)], "correct": 1,
                "scored": 1, "failed": 0, "mode": None,
                "cost": {**f["cost"], "mean_ci95_usd": None, "total_usd": f["cost"]["mean_usd"]},
                "latency_ms": {**f["latency_ms"], "p5": 1.0, "p25": 2.0, "p75": 3.0, "p95": 4.0}}
            for n, f in s["systems"].items()
        },
        "pareto": s["pareto"],
    }
    return render_html(full)
