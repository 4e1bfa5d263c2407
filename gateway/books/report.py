"""``fusion-gateway report``: ``/v1/fusion/stats`` as a table, with one plain verdict per pool."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx


def fetch(url: str, api_key: str | None = None, timeout: float = 10) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    resp = httpx.get(url.rstrip("/") + "/v1/fusion/stats", headers=headers, timeout=timeout)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json(parse_float=Decimal)
    return data


def verdict(pool: dict[str, Any]) -> str:
    """E.g. ``fusion: 3.1x cost, +240 ms p50, wins 58% / ties 21% / loses 21% (n=412)``."""
    ratios, cmp_ = pool["ratios"], pool["comparison"]
    fused_p50 = pool["fusion"]["latency_ms"]["p50"]
    base_p50 = pool["baseline"]["latency_ms"]["p50"]
    if not pool["baseline"]["model"]:
        return "no baseline configured"
    if not pool["baseline"]["samples"]:
        return "no baseline samples yet"
    parts = []
    if ratios["cost_p50"] is not None:
        parts.append(f"{float(ratios['cost_p50']):.1f}x cost")
    if fused_p50 is not None and base_p50 is not None:
        parts.append(f"{float(fused_p50) - float(base_p50):+.0f} ms p50")
    if cmp_["n"]:
        parts.append(
            f"wins {_pct(cmp_['win_rate'])} / ties {_pct(cmp_['tie_rate'])} / loses {_pct(cmp_['loss_rate'])}"
            f" (n={cmp_['n']})"
        )
    else:
        parts.append("not judged yet")
    return "fusion: " + ", ".join(parts)


def render(stats: dict[str, Any]) -> str:
    header = ["pool", "mode", "ok/degr/err", "p50 ms", "p95 ms", "mean $", "base p50", "base $", "lat x", "cost x"]
    rows = [header]
    for p in stats["pools"]:
        r, f, b, x = p["requests"], p["fusion"], p["baseline"], p["ratios"]
        rows.append(
            [
                p["pool"],
                str(p["mode"]),
                f"{r['ok']}/{r['degraded']}/{r['error']}",
                _num(f["latency_ms"]["p50"]),
                _num(f["latency_ms"]["p95"]),
                _usd(f["mean_cost_usd"]),
                _num(b["latency_ms"]["p50"]),
                _usd(b["mean_cost_usd"]),
                _num(x["latency_p50"], 2),
                _num(x["cost_p50"], 2),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for p in stats["pools"]:
        lines.append(f"{p['pool']}: {verdict(p)}")
    return "\n".join(lines)


def _pct(rate: Any) -> str:
    return "-" if rate is None else f"{float(rate) * 100:.0f}%"


def _num(x: Any, digits: int = 0) -> str:
    return "-" if x is None else f"{float(x):,.{digits}f}"


def _usd(x: Any) -> str:
    return "-" if x is None else f"{Decimal(x):.6f}"
