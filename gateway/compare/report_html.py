"""``report.html``: one self-contained page (inline CSS and SVG, no script, nothing fetched) that a lead
reads in 30 seconds: a headline per pool, then quality vs cost, latency, judge preference, break-even."""

from __future__ import annotations

import math
from decimal import Decimal
from html import escape
from typing import Any

from gateway.compare.report_md import fmt_usd, stage_lines
from gateway.compare.summary import FORMULAS, break_even_sentence, pairwise_sentence
from gateway.compare.svg import Scale, Svg, linear_ticks, spread

BASELINE_COLOUR = "#495057"
POOL_COLOURS = ["#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c"]
WIN, TIE, LOSS = "#2f9e44", "#adb5bd", "#e03131"

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; background: #f8f9fa; color: #212529; }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; }
.meta { color: #6c757d; margin: 0 0 16px; }
.headline { background: #fff; border-left: 6px solid var(--c); border-radius: 6px; padding: 12px 16px;
            margin: 10px 0; box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.headline strong { font-size: 17px; display: block; }
.headline span { color: #495057; display: block; margin-top: 4px; }
figure { background: #fff; border-radius: 6px; padding: 12px; margin: 12px 0;
         box-shadow: 0 1px 2px rgba(0,0,0,.06); }
figcaption { color: #495057; font-size: 13px; margin-top: 6px; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg.chart text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #343a40; }
svg.chart .axis { stroke: #868e96; stroke-width: 1; }
svg.chart .grid { stroke: #e9ecef; stroke-width: 1; }
svg.chart .muted { fill: #868e96; }
svg.chart .label { font-weight: 600; }
svg.chart .halo { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
table { border-collapse: collapse; width: 100%; background: #fff; border-radius: 6px; overflow: hidden;
        box-shadow: 0 1px 2px rgba(0,0,0,.06); font-size: 14px; }
th, td { padding: 6px 10px; text-align: right; border-bottom: 1px solid #e9ecef; }
th:first-child, td:first-child { text-align: left; }
th { background: #f1f3f5; font-weight: 600; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px;
          background: var(--c); }
ul.notes { color: #495057; font-size: 13px; padding-left: 18px; }
.warning { background: #fff3bf; border-left: 6px solid #f08c00; border-radius: 6px; padding: 10px 16px; }
/* On a phone the eight columns do not fit: each system becomes a card of "label  value" lines. */
@media (max-width: 640px) {
  main { padding: 16px 12px 32px; }
  table, tbody, tr, td { display: block; width: auto; }
  tr:first-child { display: none; }
  tr { border-bottom: 6px solid #f8f9fa; }
  td { display: flex; justify-content: space-between; gap: 12px; text-align: right; }
  td::before { content: attr(data-label); color: #6c757d; text-align: left; }
  td:first-child { font-weight: 600; justify-content: flex-start; }
  td:first-child::before { content: none; }
}
code { font-size: 13px; overflow-wrap: anywhere; }
"""


def colours(s: dict[str, Any]) -> dict[str, str]:
    out = {s["baseline"]: BASELINE_COLOUR}
    for i, name in enumerate(s["pools"]):
        out[name] = POOL_COLOURS[i % len(POOL_COLOURS)]
    return out


def usd_label(v: float) -> str:
    if v == 0:
        return "$0"
    if v >= 100:
        return f"${v:,.0f}"
    if v >= 1:
        return f"${v:,.2f}"
    digits = max(2, -math.floor(math.log10(abs(v))) + 1)
    return f"${v:.{digits}f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- quality vs cost


def clusters(xs: list[float], width: float) -> list[list[int]]:
    """Indices grouped by x, a new group wherever the gap to the previous point is ``width`` or more."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and xs[i] - xs[groups[-1][-1]] < width:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def chart_quality_cost(s: dict[str, Any], col: dict[str, str]) -> tuple[str, list[str]]:
    W, H, L, R, T, B = 760, 420, 70, 190, 20, 56
    pts = []
    missing = []
    for name, f in s["systems"].items():
        mean = f["cost"]["mean_usd"]
        if f["accuracy"] is None or mean is None:
            missing.append(name)
            continue
        ci = f["cost"]["mean_ci95_usd"] or [float(mean), float(mean)]
        pts.append((name, float(Decimal(mean)), ci, f["accuracy"], f["accuracy_ci95"]))
    svg = Svg("chart-quality-cost", W, H, "Quality vs cost per request, with 95% confidence intervals")
    if not pts:
        svg.text(W / 2, H / 2, "no system has both a score and a known cost", anchor="middle", cls="muted")
        return svg.render(), missing
    costs = [p[1] for p in pts]
    positive = [c for c in costs if c > 0]
    use_log = bool(positive) and len(positive) == len(costs) and max(costs) / min(costs) >= 10
    if use_log:
        lo = math.floor(math.log10(min(min(costs), *[max(p[2][0], min(costs) / 3) for p in pts]) * 0.9))
        hi = math.ceil(math.log10(max(max(costs), *[p[2][1] for p in pts]) * 1.1))
        if hi == lo:
            hi += 1
        x = Scale(lo, hi, L, W - R, log=True)
        xticks = [10.0**k for k in range(lo, hi + 1)]
    else:
        top = max(max(costs), *[p[2][1] for p in pts]) * 1.15 or 1.0
        xticks = linear_ticks(0, top)
        x = Scale(0, xticks[-1], L, W - R)
    ylo_raw = min(p[4][0] for p in pts)
    ylo = max(0.0, math.floor((ylo_raw - 0.05) * 10) / 10)
    y = Scale(ylo, 1.0, H - B, T)
    yticks = linear_ticks(ylo, 1.0, 6)
    for t in yticks:
        svg.line(L, y(t), W - R, y(t), cls="grid")
        svg.text(L - 8, y(t) + 4, f"{100 * t:.0f}%", anchor="end")
    for t in xticks:
        svg.line(x(t), T, x(t), H - B, cls="grid")
        svg.text(x(t), H - B + 18, usd_label(t), anchor="middle")
    svg.line(L, H - B, W - R, H - B, cls="axis")
    svg.line(L, T, L, H - B, cls="axis")
    svg.text(
        (L + W - R) / 2,
        H - 12,
        "mean cost per request (USD" + (", log scale)" if use_log else ")"),
        anchor="middle",
        cls="muted",
    )
    svg.text(
        16,
        (T + H - B) / 2,
        "right answers",
        anchor="middle",
        cls="muted",
        transform=f"rotate(-90 16 {(T + H - B) / 2})",
    )
    # Labels to the right of their point, moved apart vertically where points are close.
    label_y = [0.0] * len(pts)
    for cluster in clusters([x(p[1]) for p in pts], 140):  # only labels that could touch are moved
        placed = spread([y(pts[i][3]) for i in cluster], 30, T + 6, H - B - 14)
        for i, ly in zip(cluster, placed, strict=True):
            label_y[i] = ly
    for (name, cost, ci, acc, aci), ly in zip(pts, label_y, strict=True):
        c = col.get(name, BASELINE_COLOUR)
        cx, cy = x(cost), y(acc)
        x_lo, x_hi = x(max(ci[0], 10**x.lo if use_log else 0.0)), x(ci[1])
        svg.line(cx, y(aci[0]), cx, y(aci[1]), stroke=c, stroke_width=2)
        for yy in (y(aci[0]), y(aci[1])):
            svg.line(cx - 5, yy, cx + 5, yy, stroke=c, stroke_width=2)
        svg.line(x_lo, cy, x_hi, cy, stroke=c, stroke_width=2, stroke_opacity="0.6")
        tip = (
            f"{name}: {100 * acc:.1f}% right (95% CI {100 * aci[0]:.1f}-{100 * aci[1]:.1f}%), "
            f"{usd_label(cost)} per request"
        )
        svg.circle(cx, cy, 7, fill=c, stroke="#fff", stroke_width=2, title=tip)
        if abs(ly - cy) > 2:
            svg.line(cx + 8, cy, cx + 14, ly, stroke=c, stroke_width=1)
        svg.text(cx + 16, ly - 2, name, cls="label halo", fill=c)
        svg.text(cx + 16, ly + 12, f"{100 * acc:.0f}% · {usd_label(cost)}", cls="muted halo")
    return svg.render(), missing


# --------------------------------------------------------------------------- Pareto frontiers

#: the two trade-offs drawn: (summary key, chart id, x axis, what "better on x" means)
FRONTIERS = (
    ("accuracy_vs_cost", "chart-pareto-cost", "mean cost per request (USD", "cheaper"),
    ("accuracy_vs_p50", "chart-pareto-p50", "p50 latency (ms", "faster"),
)


def chart_pareto(s: dict[str, Any], col: dict[str, str], key: str) -> tuple[str, list[str]] | None:
    """Every system as a point (accuracy against cost or p50); the frontier's points filled and joined by
    the staircase of the best accuracy reachable at each cost (or latency), the others hollow. Returns the
    SVG and the frontier's names in the order they are drawn (cheapest or fastest first)."""
    _, chart_id, xlabel, _ = next(f for f in FRONTIERS if f[0] == key)
    pts: list[tuple[str, float, float]] = []
    for name, f in s["systems"].items():
        raw = f["cost"]["mean_usd"] if key == "accuracy_vs_cost" else f["latency_ms"].get("p50")
        if f["accuracy"] is not None and raw is not None:
            pts.append((name, float(Decimal(str(raw))), f["accuracy"]))
    front_names = set(s.get("pareto", {}).get(key, []))
    if not pts or not front_names:
        return None
    W, H, L, R, T, B = 760, 360, 70, 150, 20, 50
    what = "cost per request" if key == "accuracy_vs_cost" else "p50 latency"
    svg = Svg(chart_id, W, H, f"Pareto frontier: right answers against {what}")
    xs = [p[1] for p in pts]
    use_log = key == "accuracy_vs_cost" and min(xs) > 0 and max(xs) / min(xs) >= 10
    if use_log:
        lo, hi = math.floor(math.log10(min(xs) * 0.8)), math.ceil(math.log10(max(xs) * 1.25))
        x = Scale(lo, max(hi, lo + 1), L, W - R, log=True)
        xticks = [10.0**k for k in range(lo, max(hi, lo + 1) + 1)]
    else:
        xticks = linear_ticks(0, max(xs) * 1.1 or 1.0)
        x = Scale(0, xticks[-1], L, W - R)
    ylo = max(0.0, math.floor((min(p[2] for p in pts) - 0.05) * 10) / 10)
    y = Scale(ylo, 1.0, H - B, T)
    for t in linear_ticks(ylo, 1.0, 6):
        svg.line(L, y(t), W - R, y(t), cls="grid")
        svg.text(L - 8, y(t) + 4, f"{100 * t:.0f}%", anchor="end")
    for t in xticks:
        svg.line(x(t), T, x(t), H - B, cls="grid")
        svg.text(x(t), H - B + 18, usd_label(t) if key == "accuracy_vs_cost" else f"{t:,.0f}", anchor="middle")
    svg.line(L, H - B, W - R, H - B, cls="axis")
    svg.line(L, T, L, H - B, cls="axis")
    svg.text((L + W - R) / 2, H - 10, xlabel + (", log scale)" if use_log else ")"), anchor="middle", cls="muted")
    front = sorted((p for p in pts if p[0] in front_names), key=lambda p: (p[1], p[2]))
    # The staircase: from each frontier point, right at its accuracy until the next one, then up to it.
    steps: list[tuple[float, float]] = []
    for i, (_, px, acc) in enumerate(front):
        steps.append((x(px), y(acc)))
        nxt = front[i + 1][1] if i + 1 < len(front) else None
        steps.append((x(nxt) if nxt is not None else W - R, y(acc)))
    svg.polyline(steps, cls="frontier", stroke="#212529", stroke_width=1.5, stroke_dasharray="5 3")
    # Labels just above their point (the staircase runs level with it), moved apart where points are close.
    label_y = [0.0] * len(pts)
    for cluster in clusters([x(p[1]) for p in pts], 130):
        for i, ly in zip(cluster, spread([y(pts[i][2]) - 9 for i in cluster], 15, T + 4, H - B - 8), strict=True):
            label_y[i] = ly
    for (name, px, acc), ly in zip(pts, label_y, strict=True):
        c = col.get(name, BASELINE_COLOUR)
        on = name in front_names
        if abs(ly - (y(acc) - 9)) > 2:
            svg.line(x(px) + 5, y(acc) - 4, x(px) + 10, ly, stroke=c, stroke_width=1)
        shown = usd_label(px) if key == "accuracy_vs_cost" else f"{px:,.0f} ms"
        tip = f"{name}: {100 * acc:.1f}% right, {shown}" + (" (on the frontier)" if on else " (dominated)")
        svg.circle(
            x(px), y(acc), 6, cls="frontier" if on else "dominated", title=tip,
            fill=c if on else "#fff", stroke=c, stroke_width=2, data_system=name,
        )
        if on:
            svg.text(x(px) + 10, ly, name, cls="label halo", fill=c)
        else:
            svg.text(x(px) + 10, ly, name, cls="muted halo")
    return svg.render(), [p[0] for p in front]


# --------------------------------------------------------------------------- latency


def chart_latency(s: dict[str, Any], col: dict[str, str]) -> str:
    rows = [(n, f["latency_ms"]) for n, f in s["systems"].items() if f["latency_ms"].get("n")]
    row_h, L, R, T = 46, 130, 170, 16
    W = 760
    H = T + row_h * max(1, len(rows)) + 40
    svg = Svg("chart-latency", W, H, "Latency per request: box p25-p75, line p50, whiskers p5-p95")
    if not rows:
        svg.text(W / 2, H / 2, "no answered requests", anchor="middle", cls="muted")
        return svg.render()
    top = max(r[1]["p95"] for r in rows) * 1.08
    ticks = linear_ticks(0, top)
    x = Scale(0, ticks[-1], L, W - R)
    bottom = T + row_h * len(rows)
    for t in ticks:
        svg.line(x(t), T, x(t), bottom, cls="grid")
        svg.text(x(t), bottom + 18, f"{t:,.0f}", anchor="middle")
    svg.line(L, bottom, W - R, bottom, cls="axis")
    svg.text(
        (L + W - R) / 2,
        H - 6,
        "milliseconds (wall clock per request, as the client saw it)",
        anchor="middle",
        cls="muted",
    )
    for i, (name, lat) in enumerate(rows):
        c = col.get(name, BASELINE_COLOUR)
        cy = T + row_h * i + row_h / 2
        svg.text(L - 10, cy + 4, name, anchor="end", cls="label", fill=c)
        svg.line(x(lat["p5"]), cy, x(lat["p95"]), cy, stroke=c, stroke_width=2)
        for v in (lat["p5"], lat["p95"]):
            svg.line(x(v), cy - 8, x(v), cy + 8, stroke=c, stroke_width=2)
        tip = (
            f"{name}: p5 {lat['p5']:.0f}, p25 {lat['p25']:.0f}, p50 {lat['p50']:.0f}, p75 {lat['p75']:.0f}, "
            f"p95 {lat['p95']:.0f} ms (n={lat['n']})"
        )
        svg.rect(
            x(lat["p25"]),
            cy - 12,
            x(lat["p75"]) - x(lat["p25"]),
            24,
            fill=c,
            fill_opacity="0.25",
            stroke=c,
            stroke_width=1.5,
            title=tip,
        )
        svg.line(x(lat["p50"]), cy - 12, x(lat["p50"]), cy + 12, stroke=c, stroke_width=3)
        svg.text(W - R + 10, cy + 4, f"p50 {lat['p50']:,.0f} · p95 {lat['p95']:,.0f} ms")
    return svg.render()


# --------------------------------------------------------------------------- win / tie / loss


def chart_pairwise(s: dict[str, Any], col: dict[str, str]) -> str | None:
    rows = [c for c in s["comparisons"] if c.get("pairwise")]
    if not rows:
        return None
    row_h, L, R, T = 40, 130, 20, 34
    W = 760
    H = T + row_h * len(rows) + 10
    svg = Svg("chart-pairwise", W, H, f"Judge preference against {s['baseline']}: wins, ties, losses")
    legend = [(WIN, "pool preferred"), (TIE, "tie"), (LOSS, f"{s['baseline']} preferred")]
    lx = L
    for colour, label in legend:
        svg.rect(lx, 8, 12, 12, fill=colour)
        svg.text(lx + 18, 18, label)
        lx += 40 + 7 * len(label)
    width = W - L - R
    for i, cmp in enumerate(rows):
        pw = cmp["pairwise"]
        cy = T + row_h * i
        svg.text(L - 10, cy + row_h / 2 + 2, cmp["pool"], anchor="end", cls="label", fill=col.get(cmp["pool"], "#000"))
        n = pw["judged"]
        if not n:
            svg.text(L, cy + row_h / 2 + 2, "no usable judgement", cls="muted")
            continue
        xpos = float(L)
        for count, colour, what in (
            (pw["wins"], WIN, "wins"),
            (pw["ties"], TIE, "ties"),
            (pw["losses"], LOSS, "losses"),
        ):
            w = width * count / n
            svg.rect(xpos, cy + 6, w, row_h - 14, fill=colour, title=f"{cmp['pool']}: {count} {what} of {n}")
            if w > 46:
                svg.text(
                    xpos + w / 2,
                    cy + row_h / 2 + 2,
                    f"{count} ({100 * count / n:.0f}%)",
                    anchor="middle",
                    fill="#fff" if colour != TIE else "#212529",
                )
            xpos += w
    return svg.render()


# --------------------------------------------------------------------------- break-even


def compact(v: float) -> str:
    """1,000 -> 1k, 2,500,000 -> 2.5M: axis labels that stay short on a log scale."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def chart_break_even(s: dict[str, Any], col: dict[str, str]) -> str | None:
    """Monthly cost against monthly volume. Linear axes when the break-even volumes are of one size;
    log-log when they differ by 5x or more (else the smaller ones collapse into the corner)."""
    if s.get("baseline_training_usd") is None:
        return None
    training = float(Decimal(s["baseline_training_usd"]))
    base_mean = s["systems"][s["baseline"]]["cost"]["mean_usd"]
    raw = [(c["pool"], s["systems"][c["pool"]]["cost"]["mean_usd"], c["break_even"]) for c in s["comparisons"]]
    lines = [(n, float(Decimal(m)), be) for n, m, be in raw if m is not None]
    if base_mean is None or not lines:
        return None
    cb = float(Decimal(base_mean))
    volumes = [float(Decimal(be["volume_per_month"])) for _, _, be in lines if be["volume_per_month"] is not None]
    volumes = [v for v in volumes if v > 0]
    log = len(volumes) >= 2 and max(volumes) / min(volumes) >= 5
    W, H, L, R, T, B = 760, 360, 80, 170, 20, 50
    svg = Svg("chart-break-even", W, H, "Monthly cost against monthly requests: where the fine-tuned model pays off")

    def base_cost(v: float) -> float:
        return training + cb * v

    if log:
        x_lo = math.floor(math.log10(min(volumes) / 4))
        x_hi = math.ceil(math.log10(max(volumes) * 4))
        vmin, vmax = 10.0**x_lo, 10.0**x_hi
        samples = [10 ** (x_lo + (x_hi - x_lo) * i / 80) for i in range(81)]
        ys = [base_cost(v) for v in (vmin, vmax)] + [cp * v for _, cp, _ in lines for v in (vmin, vmax)]
        ys = [y_ for y_ in ys if y_ > 0] or [1.0]
        y_lo = math.floor(math.log10(min(ys)))
        y_hi = math.ceil(math.log10(max(ys)))
        x = Scale(x_lo, x_hi, L, W - R, log=True)
        y = Scale(y_lo, max(y_hi, y_lo + 1), H - B, T, log=True)
        xticks = [10.0**k for k in range(x_lo, x_hi + 1)]
        yticks = [10.0**k for k in range(y_lo, max(y_hi, y_lo + 1) + 1)]
        xlabel = "requests per month (log scale)"
    else:
        vmax = 2 * max(volumes) if volumes else 10_000.0
        xticks = linear_ticks(0, vmax)
        vmin, vmax = 0.0, xticks[-1]
        samples = [vmin, vmax]
        ymax = max(base_cost(vmax), *[c * vmax for _, c, _ in lines]) * 1.05 or 1.0
        yticks = linear_ticks(0, ymax)
        x = Scale(0, vmax, L, W - R)
        y = Scale(0, yticks[-1], H - B, T)
        xlabel = "requests per month"
    for t in yticks:
        svg.line(L, y(t), W - R, y(t), cls="grid")
        svg.text(L - 8, y(t) + 4, "$" + compact(t) if log else usd_label(t), anchor="end")
    for t in xticks:
        svg.line(x(t), T, x(t), H - B, cls="grid")
        svg.text(x(t), H - B + 18, compact(t) if log else f"{t:,.0f}", anchor="middle")
    svg.line(L, H - B, W - R, H - B, cls="axis")
    svg.line(L, T, L, H - B, cls="axis")
    svg.text(
        (L + W - R) / 2,
        H - 10,
        xlabel + "; y: USD per month" + (" (log scale)" if log else ""),
        anchor="middle",
        cls="muted",
    )
    svg.polyline([(x(v), y(base_cost(v))) for v in samples], stroke=BASELINE_COLOUR, stroke_width=2.5)
    ends = spread([y(base_cost(vmax)), *[y(cp * vmax) for _, cp, _ in lines]], 16, T + 4, H - B + 4)
    svg.text(W - R + 8, ends[0] + 4, f"{s['baseline']} + training", cls="label", fill=BASELINE_COLOUR)
    marks = []
    for (name, cp, be), end in zip(lines, ends[1:], strict=True):
        c = col.get(name, "#000")
        svg.polyline([(x(v), y(cp * v)) for v in samples if cp * v > 0 or not log], stroke=c, stroke_width=2.5)
        svg.text(W - R + 8, end + 4, name, cls="label", fill=c)
        if be["volume_per_month"] is not None and float(Decimal(be["volume_per_month"])) > 0:
            marks.append((name, c, float(Decimal(be["volume_per_month"])), cp, be["requests_per_month"]))
    # Break-even labels under their points, pushed apart sideways where points are close.
    label_x = spread([x(v) + 8 for _, _, v, _, _ in marks], 104, L, W - R)
    for (name, c, v, cp, n), lx in zip(marks, label_x, strict=True):
        tip = f"{name}: break-even at {n:,} requests a month"
        svg.circle(x(v), y(cp * v), 5, fill=c, stroke="#fff", stroke_width=2, title=tip)
        svg.text(lx, y(cp * v) + 18, f"{n:,}/month", cls="halo", fill=c)
    return svg.render()


# --------------------------------------------------------------------------- page


_COLUMNS = ("system", "right", "95% CI", "failed", "mean cost / request", "total cost", "p50 ms", "p95 ms")


def _table(s: dict[str, Any], col: dict[str, str]) -> str:
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in _COLUMNS) + "</tr>"
    rows = []
    for name, f in s["systems"].items():
        lat = f["latency_ms"]
        acc = f"{100 * f['accuracy']:.1f}%" if f["accuracy"] is not None else "-"
        ci = f["accuracy_ci95"]
        ci_text = f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%" if ci else "-"
        mean = fmt_usd(f["cost"]["mean_usd"])
        total = fmt_usd(f["cost"]["total_usd"])
        role = " (baseline)" if name == s["baseline"] else (f" ({f['mode']})" if f.get("mode") else "")
        p50 = f"{lat['p50']:,.0f}" if lat.get("n") else "-"
        p95 = f"{lat['p95']:,.0f}" if lat.get("n") else "-"
        cells = [f"{f['correct']}/{f['scored']} = {acc}", ci_text, str(f["failed"]), mean, total, p50, p95]
        labelled = zip(_COLUMNS[1:], cells, strict=True)
        rows.append(
            f'<tr><td><span class="swatch" style="--c:{col.get(name, BASELINE_COLOUR)}"></span>{escape(name)}'
            f"{escape(role)}</td>" + "".join(f'<td data-label="{k}">{escape(v)}</td>' for k, v in labelled) + "</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(s: dict[str, Any]) -> str:
    col = colours(s)
    title = f"Fusion vs fine-tuned: {', '.join(s['pools'])} vs {s['baseline']}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may be fetched: this page must open offline, from a file, anywhere.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Dataset <code>{escape(s["dataset"])}</code> · {s["items"]} items · scorer '
        f"<code>{escape(s['scorer'])}</code> · judge {escape(str(s['judge'] or 'none'))} · gateway "
        f"{escape(s['gateway'])}</p>",
    ]
    parts.extend(f'<p class="warning"><strong>Warning:</strong> {escape(w)}.</p>' for w in s.get("warnings", []))
    for cmp in s["comparisons"]:
        extra = [t for t in (pairwise_sentence(cmp), break_even_sentence(cmp)) if t]
        parts.append(
            f'<div class="headline" style="--c:{col.get(cmp["pool"], "#000")}"><strong>{escape(cmp["headline"])}'
            f"</strong>{''.join(f'<span>{escape(t)}</span>' for t in extra)}</div>"
        )
    quality, missing = chart_quality_cost(s, col)
    note = f" No known cost, not shown: {escape(', '.join(missing))}." if missing else ""
    parts.append("<h2>Quality vs cost</h2>")
    parts.append(
        f"<figure>{quality}<figcaption>Share of right answers (vertical bars: 95% Wilson interval) against mean "
        f"cost per request (horizontal bars: 95% interval of the mean). Up and to the left is better.{note}"
        "</figcaption></figure>"
    )
    drawn = [(spec, chart_pareto(s, col, spec[0])) for spec in FRONTIERS]
    if any(chart is not None for _, chart in drawn):
        parts.append("<h2>Trade-offs: the Pareto frontier</h2>")
    for (_, chart_id, _, better), chart in drawn:
        if chart is None:
            continue
        svg_text, names = chart
        parts.append(
            f'<figure>{svg_text}<figcaption data-frontier="{chart_id}">On the frontier (filled; no other system is '
            f"at least as accurate and {better}): <strong>{escape(', '.join(names))}</strong>. Hollow points are "
            f"beaten on both counts by a system on it.</figcaption></figure>"
        )
    parts.append("<h2>Latency</h2>")
    stages = stage_lines(s)
    where = (
        (" Where a pool's time goes (p50 of the gateway's own breakdown): " + "; ".join(stages) + ".") if stages else ""
    )
    parts.append(
        f"<figure>{chart_latency(s, col)}<figcaption>Box: middle half of requests (p25-p75); thick line: median "
        f"(p50); whiskers: p5 to p95.{escape(where)}</figcaption></figure>"
    )
    pw = chart_pairwise(s, col)
    if pw is not None:
        parts.append(
            f"<h2>Which answer does the judge prefer?</h2><figure>{pw}<figcaption>Judge {escape(str(s['judge']))}"
            " sees the pool's and the baseline's answers anonymously, in both orders; a split vote is a tie."
            "</figcaption></figure>"
        )
    be = chart_break_even(s, col)
    if be is not None:
        parts.append(
            f"<h2>Break-even</h2><figure>{be}<figcaption>Monthly cost: {escape(s['baseline'])} with its "
            f"${escape(s['baseline_training_usd'])} training charged to the month, against each pool. Above the marked "
            "volume the fine-tuned model is cheaper overall: V* = training / (c_pool − c_ft).</figcaption></figure>"
        )
    parts.append("<h2>All figures</h2>")
    parts.append(_table(s, col))
    notes = [
        "Accuracy: right / scorable items; a request that failed after retries counts as wrong. "
        f"95% CI: {FORMULAS['accuracy_ci']}.",
        "Cost: the gateway's <code>x-fusion-cost-usd</code> per answered request, added up as exact decimals. "
        f"Interval of the mean: {FORMULAS['cost_ci']}.",
        f"Latency: wall clock per answered request as the client saw it; percentiles by {FORMULAS['percentiles']}.",
        f"Pairwise: {FORMULAS['pairwise']}.",
        f"Break-even: {FORMULAS['break_even']}.",
    ]
    parts.append('<h2>How these figures are computed</h2><ul class="notes">')
    parts.extend(f"<li>{n if '<code>' in n else escape(n)}</li>" for n in notes)
    parts.append("</ul>")
    if s.get("command"):
        parts.append(f'<p class="meta">Command: <code>fusion-gateway {escape(" ".join(s["command"]))}</code></p>')
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
