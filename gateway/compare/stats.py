"""Statistics, computed here (no numpy/scipy), each with the formula it uses.

- Accuracy: Wilson score interval at 95% (z = 1.959963984540054, the 97.5th percentile of the normal):
  centre = (p + z²/2n) / (1 + z²/n), half-width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).
  Unlike p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and behaves near 0% and 100%.
- Mean cost: normal approximation, mean ± z·s/√n with s the sample standard deviation (n - 1).
- Percentiles: nearest rank, the ⌈q·n⌉-th smallest value (a value that was actually observed).
- Break-even: see :func:`break_even`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; (0.0, 1.0) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # At p = 0 or 1 the bound is exactly 0 or 1; floating point would give 0.9999999999999999.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def mean_ci(values: Sequence[float], z: float = Z95) -> tuple[float, float, float] | None:
    """(mean, low, high): normal approximation with the sample standard deviation."""
    n = len(values)
    if n == 0:
        return None
    mean = math.fsum(values) / n
    if n == 1:
        return mean, mean, mean
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class BreakEven:
    """The fine-tuned model costs ``training + V x baseline`` in a month of V requests, the pool ``V x pool``.
    The fine-tuned model is cheaper overall above V* = training / (pool - baseline) requests a month;
    when the pool is not dearer per request, never."""

    #: requests per month; None when never (or unknown)
    volume: Decimal | None
    never: bool
    known: bool

    @property
    def requests(self) -> int | None:
        """V* rounded up to whole requests."""
        if self.volume is None:
            return None
        return int(self.volume.to_integral_value(rounding=ROUND_CEILING))


def break_even(
    training_usd: Decimal, pool_per_request: Decimal | None, baseline_per_request: Decimal | None
) -> BreakEven:
    if pool_per_request is None or baseline_per_request is None:
        return BreakEven(volume=None, never=False, known=False)
    diff = pool_per_request - baseline_per_request
    if diff <= 0:
        return BreakEven(volume=None, never=True, known=True)
    return BreakEven(volume=training_usd / diff, never=False, known=True)


def pareto(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names on the frontier of (accuracy, cost-like): no other system is at least as accurate and at most
    as costly (or slow) while strictly better on one of the two. In the order given."""
    front = []
    for name, (acc, cost) in points.items():
        dominated = any(
            a >= acc and c <= cost and (a > acc or c < cost) for other, (a, c) in points.items() if other != name
        )
        if not dominated:
            front.append(name)
    return front


@dataclass(frozen=True)
class Paired:
    """McNemar's test on the items both systems were scored on.

    ``a_only``/``b_only`` are the discordant items (one right, the other wrong); only they carry evidence.
    p-value: exact two-sided binomial, 2·P(X <= min(a_only, b_only)) with X ~ Bin(a_only + b_only, 1/2),
    capped at 1. Difference of accuracies d = (a_only - b_only) / n with the Wald interval for paired
    proportions, d ± z·sqrt(a_only + b_only - (a_only - b_only)²/n) / n."""

    n: int
    a_only: int
    b_only: int
    p_value: float
    difference: float
    difference_ci95: tuple[float, float]


def mcnemar(a: Sequence[bool | None], b: Sequence[bool | None], z: float = Z95) -> Paired:
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    n = len(pairs)
    a_only = sum(1 for x, y in pairs if x and not y)
    b_only = sum(1 for x, y in pairs if y and not x)
    discordant = a_only + b_only
    if discordant == 0:
        p = 1.0
    else:
        tail = sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1))
        p = min(1.0, 2 * tail / 2**discordant)
    if n == 0:
        return Paired(0, 0, 0, 1.0, 0.0, (0.0, 0.0))
    d = (a_only - b_only) / n
    half = z * math.sqrt(max(0.0, discordant - (a_only - b_only) ** 2 / n)) / n
    return Paired(n, a_only, b_only, p, d, (d - half, d + half))
