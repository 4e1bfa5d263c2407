"""Live per-pool figures for ``GET /v1/fusion/stats``: is fusion worth it against the baseline?

Counts are exact since start; latency and ratio percentiles come from the most recent ``window`` samples
(bounded memory). Costs are exact decimals. The store is per process: with several workers, each
reports its own traffic (Prometheus aggregates across workers and replicas).
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, q in (0, 100]: the ceil(q/100 * n)-th smallest value; None without data.

    The one definition: the live statistics here and the offline ``compare`` report give the same p50
    on the same data.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Costs:
    total: Decimal = Decimal(0)
    n: int = 0
    unknown: int = 0

    def add(self, cost: Decimal | None) -> None:
        if cost is None:
            self.unknown += 1
        else:
            self.total += cost
            self.n += 1

    def mean(self) -> Decimal | None:
        return self.total / self.n if self.n else None


@dataclass
class PoolStats:
    window: int
    outcomes: Counter[str] = field(default_factory=Counter)
    latency_ms: deque[float] = field(init=False)
    costs: _Costs = field(default_factory=_Costs)
    baseline_latency_ms: deque[float] = field(init=False)
    baseline_costs: _Costs = field(default_factory=_Costs)
    baseline_errors: int = 0
    latency_ratio: deque[float] = field(init=False)
    cost_ratio: deque[float] = field(init=False)
    comparisons: Counter[str] = field(default_factory=Counter)
    #: cascade: answers that stood, escalations, and what the escalation pool cost when it ran
    cascade_accepted: int = 0
    cascade_escalated: int = 0
    escalation_costs: _Costs = field(default_factory=_Costs)

    def __post_init__(self) -> None:
        self.latency_ms = deque(maxlen=self.window)
        self.baseline_latency_ms = deque(maxlen=self.window)
        self.latency_ratio = deque(maxlen=self.window)
        self.cost_ratio = deque(maxlen=self.window)


class StatsStore:
    def __init__(self, window: int = 10_000) -> None:
        self.window = window
        self.since = int(time.time())
        self._pools: dict[str, PoolStats] = {}
        #: per request, by id: what streamed answers cannot say in a header

    def _pool(self, name: str) -> PoolStats:
        # Keys are pool names from the config: bounded.
        stats = self._pools.get(name)
        if stats is None:
            stats = self._pools[name] = PoolStats(self.window)
        return stats

    def request(self, pool: str, outcome: str, latency_ms: float | None = None, cost: Decimal | None = None) -> None:
        s = self._pool(pool)
        s.outcomes[outcome] += 1
        if outcome != "error" and latency_ms is not None:
            s.latency_ms.append(latency_ms)
            s.costs.add(cost)

    def baseline(
        self,
        pool: str,
        latency_ms: float,
        cost: Decimal | None,
        fused_latency_ms: float | None,
        fused_cost: Decimal | None,
    ) -> tuple[float | None, float | None]:
        """Record one baseline sample; returns the (latency, cost) ratios fused / baseline."""
        s = self._pool(pool)
        s.baseline_latency_ms.append(latency_ms)
        s.baseline_costs.add(cost)
        lat_ratio = fused_latency_ms / latency_ms if fused_latency_ms is not None and latency_ms > 0 else None
        cost_ratio = float(fused_cost / cost) if fused_cost is not None and cost else None
        if lat_ratio is not None:
            s.latency_ratio.append(lat_ratio)
        if cost_ratio is not None:
            s.cost_ratio.append(cost_ratio)
        return lat_ratio, cost_ratio

    def cascade(self, pool: str, escalated: bool, escalation_cost: Decimal | None) -> None:
        s = self._pool(pool)
        if escalated:
            s.cascade_escalated += 1
            s.escalation_costs.add(escalation_cost)
        else:
            s.cascade_accepted += 1

    def baseline_failed(self, pool: str) -> None:
        self._pool(pool).baseline_errors += 1

    def comparison(self, pool: str, result: str) -> None:
        self._pool(pool).comparisons[result] += 1

    def snapshot(self, pools: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``pools``: name -> {"mode", "baseline"} for every configured pool, in config order."""
        out = []
        for name, info in pools.items():
            s = self._pools.get(name) or PoolStats(self.window)
            compared = s.comparisons["fusion"] + s.comparisons["baseline"] + s.comparisons["tie"]
            out.append(
                {
                    "pool": name,
                    "mode": info.get("mode"),
                    "requests": {
                        "ok": s.outcomes["ok"],
                        "degraded": s.outcomes["degraded"],
                        "error": s.outcomes["error"],
                        "total": sum(s.outcomes.values()),
                    },
                    "fusion": {
                        "samples": len(s.latency_ms),
                        "latency_ms": _pcts(s.latency_ms),
                        "mean_cost_usd": s.costs.mean(),
                    },
                    "baseline": {
                        "model": info.get("baseline"),
                        "samples": len(s.baseline_latency_ms),
                        "errors": s.baseline_errors,
                        "latency_ms": _pcts(s.baseline_latency_ms),
                        "mean_cost_usd": s.baseline_costs.mean(),
                    },
                    "ratios": {
                        "samples": len(s.latency_ratio),
                        "latency_p50": _round(percentile(s.latency_ratio, 50)),
                        "cost_p50": _round(percentile(s.cost_ratio, 50)),
                    },
                    **({"cascade": _cascade(s)} if info.get("mode") == "cascade" else {}),
                    "comparison": {
                        "wins": s.comparisons["fusion"],
                        "ties": s.comparisons["tie"],
                        "losses": s.comparisons["baseline"],
                        "errors": s.comparisons["error"],
                        "n": compared,
                        "win_rate": _rate(s.comparisons["fusion"], compared),
                        "tie_rate": _rate(s.comparisons["tie"], compared),
                        "loss_rate": _rate(s.comparisons["baseline"], compared),
                    },
                }
            )
        return {"object": "fusion.stats", "since": self.since, "window": self.window, "pools": out}


def _cascade(s: PoolStats) -> dict[str, Any]:
    """Escalation rate, and what the cascade saved per request against running the pool every time (the
    pool's cost as measured on the escalations, minus the cascade's own mean cost, escalations included)."""
    n = s.cascade_accepted + s.cascade_escalated
    pool_cost, mean = s.escalation_costs.mean(), s.costs.mean()
    saved = pool_cost - mean if pool_cost is not None and mean is not None else None
    return {
        "requests": n,
        "escalated": s.cascade_escalated,
        "escalation_rate": _rate(s.cascade_escalated, n),
        "pool_mean_cost_usd": pool_cost,
        "saved_usd_per_request": saved,
        "saved_rate": float(round(saved / pool_cost, 4)) if saved is not None and pool_cost else None,
    }


def _pcts(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": _round(percentile(values, 50)), "p95": _round(percentile(values, 95))}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _rate(n: int, total: int) -> float | None:
    return round(n / total, 4) if total else None
