"""``report.md``: the headline sentences first, then the table, then how the figures were computed."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from gateway.compare.summary import break_even_sentence, pairwise_sentence


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def fmt_ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"


def fmt_usd(text: str | None, digits: int = 4) -> str:
    """Money for people: ``$0.0001258`` rather than the exact ``0.000125752917`` (summary.json keeps that);
    cents from a dollar up (``$1,234.57``)."""
    if text is None:
        return "unknown"
    value = Decimal(text)
    if not value:
        return "$0"
    rounded = value.quantize(Decimal(1).scaleb(value.adjusted() - digits + 1), rounding=ROUND_HALF_EVEN)
    return f"${value:,.2f}" if abs(rounded) >= 1 else f"${rounded:f}"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def stage_lines(s: dict[str, Any]) -> list[str]:
    """'best-of-3: fan-out 577 ms, judge 409 ms, gateway itself 0.9 ms' per pool."""
    out = []
    for name, f in s["systems"].items():
        p50 = f.get("gateway_latency_p50_ms")
        if not p50 or p50.get("fanout") is None:
            continue
        parts = [f"fan-out {p50['fanout']:,.0f} ms"]
        if p50.get("judge") is not None:
            parts.append(f"judge {p50['judge']:,.0f} ms")
        if p50.get("gateway") is not None:
            parts.append(f"gateway itself {p50['gateway']:,.1f} ms")
        out.append(f"{name}: " + ", ".join(parts))
    return out


def render_markdown(s: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    pools = ", ".join(s["pools"])
    add(f"# Fusion vs fine-tuned: {pools} vs {s['baseline']}")
    add("")
    add(f"Dataset `{s['dataset']}`, {s['items']} items, scorer `{s['scorer']}`, gateway {s['gateway']}.")
    add("")
    for warning in s.get("warnings", []):
        add(f"> **Warning:** {warning}.")
        add("")
    for cmp in s["comparisons"]:
        add(f"- **{cmp['headline']}**")
        for extra in (pairwise_sentence(cmp), break_even_sentence(cmp)):
            if extra:
                add(f"  {extra}")
    add("")
    add("| system | right | 95% CI | failed | mean cost / request | total cost | cost / correct | p50 ms | p95 ms |")
    add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, f in s["systems"].items():
        role = " (baseline)" if name == s["baseline"] else ""
        lat = f["latency_ms"]
        add(
            f"| {name}{role} | {f['correct']}/{f['scored']} = {fmt_pct(f['accuracy'])} | {fmt_ci(f['accuracy_ci95'])} "
            f"| {f['failed']} | {fmt_usd(f['cost']['mean_usd'])} | {fmt_usd(f['cost']['total_usd'])} "
            f"| {fmt_usd(f.get('cost_per_correct_usd'))} | {fmt_ms(lat.get('p50'))} | {fmt_ms(lat.get('p95'))} |"
        )
    front = s.get("pareto")
    if front:
        add("")
        add("Pareto frontier (no other system is at least as accurate and cheaper, or faster): "
            f"accuracy vs cost: {', '.join(front['accuracy_vs_cost']) or 'none'}; "
            f"accuracy vs p50: {', '.join(front['accuracy_vs_p50']) or 'none'}.")
    if s.get("paired"):
        add("")
        add("Paired test on the same items (McNemar, exact): does A's accuracy differ from B's?")
        add("")
        add("| A | B | only A right | only B right | A - B | 95% CI | p |")
        add("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for t in s["paired"]:
            lo, hi = t["difference_ci95"]
            add(f"| {t['a']} | {t['b']} | {t['a_only']} | {t['b_only']} | {t['difference'] * 100:+.1f} pts "
                f"| {lo * 100:+.1f} to {hi * 100:+.1f} | {t['p_value']:.3g} |")
    stages = stage_lines(s)
    if stages:
        add("")
        add("Where a pool's time goes, p50 of the gateway's own `fusion.latency_ms`:")
        add("")
        for line in stages:
            add(f"- {line}")
    judged = [c for c in s["comparisons"] if c.get("pairwise")]
    if judged:
        add("")
        add(f"Pairwise preference against {s['baseline']} (judge {s['judge']}, both orders):")
        add("")
        add("| pool | wins | ties | losses | identical answers | errors | not judged | judge cost |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in judged:
            pw = c["pairwise"]
            add(
                f"| {c['pool']} | {pw['wins']} | {pw['ties']} | {pw['losses']} | {pw['identical_answers']} "
                f"| {pw['errors']} | {pw['not_judged']} | {fmt_usd(pw['judge_cost_usd'])} |"
            )
    if s.get("baseline_training_usd") is not None:
        add("")
        add(f"Break-even with ${s['baseline_training_usd']} of training for {s['baseline']}:")
        add("")
        for c in s["comparisons"]:
            be = c["break_even"]
            if not be["known"]:
                text = "unknown (a cost is unknown)"
            elif be["never"]:
                text = f"never: {c['pool']} is not dearer per request"
            else:
                text = (
                    f"{be['requests_per_month']:,} requests a month "
                    f"(V* = {be['training_usd']} / ({c['cost_per_request_delta_usd']}) = {be['volume_per_month']})"
                )
            add(f"- {c['pool']}: {text}")
    add("")
    add("## How these figures are computed")
    add("")
    f = s["formulas"]
    add(f"- Accuracy: right / scorable items; a failed request counts as wrong. 95% CI: {f['accuracy_ci']}.")
    add(
        "- Cost: the gateway's `x-fusion-cost-usd` header per answered request, summed as exact decimals; "
        f"95% CI of the mean: {f['cost_ci']}."
    )
    add(
        "- Latency: wall clock of each answered request as the compare client saw it (same stopwatch for every "
        f"system); percentiles by {f['percentiles']}."
    )
    add(f"- Pairwise: {f['pairwise']}.")
    add(f"- Break-even: {f['break_even']}.")
    if s.get("command"):
        add("")
        add("Command: `fusion-gateway " + " ".join(s["command"]) + "`")
    add("")
    return "\n".join(out)
