"""From per-item results to the figures of the report (``summary.json``), and the sentences a lead reads.

Accuracy counts every scorable item: a request that failed (after retries) counts as wrong, since no
answer reached the caller. Cost per request is over answered requests; a failed request reports no cost.
Latency is the wall clock this client saw for each answered request, the same stopwatch for every system;
for pools the gateway's own breakdown (fan-out, judge) is reported beside it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.books.stats import percentile
from gateway.compare import stats
from gateway.compare.client import parse_cost
from gateway.compare.runner import Plan, Runner, System
from gateway.compare.scoring import Scorer

#: mean costs are kept to this many decimal places (per-item costs have 9)
MEAN_PLACES = Decimal("1e-12")

FORMULAS = {
    "accuracy_ci": (
        "Wilson score interval, 95%: z = 1.959963984540054; centre = (p + z^2/2n) / (1 + z^2/n), "
        "half-width = z*sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)"
    ),
    "cost_ci": "mean cost per request +- z*s/sqrt(n), s the sample standard deviation (normal approximation)",
    "percentiles": "nearest rank: the ceil(q*n)-th smallest latency",
    "break_even": (
        "a month of V requests costs training + V*c_ft on the fine-tuned model and V*c_pool on the pool, "
        "so the fine-tuned model is cheaper overall above V* = training / (c_pool - c_ft) requests a month "
        "(c = mean cost per request; training charged to one month: spread over m months, V*/m); "
        "never when c_pool <= c_ft"
    ),
    "pairwise": (
        "the judge sees both answers, anonymous, twice (both presentation orders): both votes for the pool = win, "
        "both for the baseline = loss, split = tie; identical answers = tie without asking"
    ),
}


def money(value: Decimal | None) -> str | None:
    """Exact decimal text without exponent or trailing zeros: ``0.0042``."""
    if value is None:
        return None
    return format(value.normalize(), "f") if value else "0"


def _decimal(text: Any) -> Decimal | None:
    return parse_cost(text) if isinstance(text, str) else None


def item_scores(runner: Runner, system: System, scorer: Scorer) -> list[bool | None]:
    """Per item: right, wrong (a failed request is wrong), or None when not run or not scorable."""
    out: list[bool | None] = []
    for item in runner.plan.items:
        ln = runner.result(item, system.name)
        if ln is None:
            out.append(None)
            continue
        out.append(scorer.score(ln.get("answer") if ln.get("status") == "ok" else None, item.reference))
    return out


def tally(runner: Runner, system: System, scorer: Scorer) -> tuple[int, int]:
    """(right, scorable) for one system's recorded answers; a failed request is a wrong answer."""
    scores = [v for v in item_scores(runner, system, scorer) if v is not None]
    return sum(scores), len(scores)


def system_figures(runner: Runner, system: System, scorer: Scorer) -> dict[str, Any]:
    items = runner.plan.items
    lines = [runner.result(item, system.name) for item in items]
    answered = [ln for ln in lines if ln is not None and ln.get("status") == "ok"]
    failed = sum(1 for ln in lines if ln is not None and ln.get("status") != "ok")
    missing = sum(1 for ln in lines if ln is None)
    correct, scored = tally(runner, system, scorer)
    lo, hi = stats.wilson(correct, scored)
    costs = [_decimal(ln.get("cost_usd")) for ln in answered]
    known = [c for c in costs if c is not None]
    unknown = len(costs) - len(known)
    total = sum(known, Decimal(0)) if not unknown else None
    mean = (total / len(known)).quantize(MEAN_PLACES) if total is not None and known else None
    cost_ci = stats.mean_ci([float(c) for c in known]) if not unknown else None
    by_role: dict[str, Decimal | None] = {}
    if system.kind == "pool":
        for role in ("member", "judge"):
            parts = [_decimal(((ln.get("fusion") or {}).get("cost_by_role") or {}).get(role)) for ln in answered]
            by_role[role] = None if any(p is None for p in parts) else sum((p for p in parts if p), Decimal(0))
    latencies = [float(ln["latency_ms"]) for ln in answered if isinstance(ln.get("latency_ms"), int | float)]
    figures: dict[str, Any] = {
        "name": system.name,
        "kind": system.kind,
        "mode": system.mode,
        "members": list(system.members),
        "judge": system.judge,
        "items": len(items),
        "answered": len(answered),
        "failed": failed,
        "not_run": missing,
        "scored": scored,
        "correct": correct,
        "accuracy": correct / scored if scored else None,
        "accuracy_ci95": [lo, hi] if scored else None,
        "cost": {
            "known": len(known),
            "unknown": unknown,
            "total_usd": money(total),
            "mean_usd": money(mean),
            "mean_ci95_usd": [cost_ci[1], cost_ci[2]] if cost_ci else None,
            "by_role_usd": {k: money(v) for k, v in by_role.items()} if by_role else None,
        },
        "latency_ms": latency_figures(latencies),
        "cost_per_correct_usd": (
            money((total / correct).quantize(MEAN_PLACES)) if total is not None and correct else None
        ),
    }
    if system.kind == "pool":
        stages: dict[str, list[float]] = {"fanout": [], "judge": [], "gateway": []}
        for ln in answered:
            lat = (ln.get("fusion") or {}).get("latency_ms") or {}
            for k in stages:
                if isinstance(lat.get(k), int | float):
                    stages[k].append(float(lat[k]))
        figures["gateway_latency_p50_ms"] = {k: percentile(v, 50) for k, v in stages.items()}
        figures["degraded"] = sum(1 for ln in answered if (ln.get("fusion") or {}).get("degraded"))
    return figures


def latency_figures(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(values)}
    for q in (5, 25, 50, 75, 95, 99):
        out[f"p{q}"] = percentile(values, q)
    out["min"] = min(values)
    out["max"] = max(values)
    out["mean"] = sum(values) / len(values)
    return out


def pairwise_figures(runner: Runner, pool: System) -> dict[str, Any]:
    counts = {"win": 0, "tie": 0, "loss": 0, "error": 0}
    identical = not_judged = 0
    cost: Decimal | None = Decimal(0)
    for item in runner.plan.items:
        line = runner.judgement(item, pool)
        if line is None or line.get("status") != "ok":
            not_judged += 1
            continue
        counts[str(line.get("outcome"))] = counts.get(str(line.get("outcome")), 0) + 1
        if line.get("reason") == "identical answers":
            identical += 1
        c = _decimal(line.get("cost_usd"))
        cost = None if cost is None or c is None else cost + c
    decided = counts["win"] + counts["tie"] + counts["loss"]
    return {
        "judge": runner.plan.judge,
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
        "errors": counts["error"],
        "judged": decided,
        "identical_answers": identical,
        "not_judged": not_judged,
        "judge_cost_usd": money(cost),
    }


def _ratio(a: str | None, b: str | None) -> Decimal | None:
    if a is None or b is None or Decimal(b) == 0:
        return None
    return Decimal(a) / Decimal(b)


def comparison(
    pool: dict[str, Any], base: dict[str, Any], pairwise: dict[str, Any] | None, training: Decimal | None
) -> dict[str, Any]:
    ratio = _ratio(pool["cost"]["mean_usd"], base["cost"]["mean_usd"])
    p50a, p50b = pool["latency_ms"].get("p50"), base["latency_ms"].get("p50")
    delta = p50a - p50b if p50a is not None and p50b is not None else None
    out: dict[str, Any] = {
        "pool": pool["name"],
        "baseline": base["name"],
        "accuracy_delta": (
            pool["accuracy"] - base["accuracy"]
            if pool["accuracy"] is not None and base["accuracy"] is not None
            else None
        ),
        "cost_ratio": float(ratio) if ratio is not None else None,
        "cost_per_request_delta_usd": money(
            Decimal(pool["cost"]["mean_usd"]) - Decimal(base["cost"]["mean_usd"])
            if pool["cost"]["mean_usd"] is not None and base["cost"]["mean_usd"] is not None
            else None
        ),
        "latency_p50_delta_ms": delta,
        "pairwise": pairwise,
        "break_even": None,
    }
    if training is not None:
        be = stats.break_even(training, _decimal(pool["cost"]["mean_usd"]), _decimal(base["cost"]["mean_usd"]))
        out["break_even"] = {
            "training_usd": money(training),
            "known": be.known,
            "never": be.never,
            "volume_per_month": money(be.volume.quantize(Decimal("0.01")) if be.volume is not None else None),
            "requests_per_month": be.requests,
        }
    out["headline"] = headline(pool, base, out)
    return out


def pct(x: float) -> str:
    return f"{100 * x:.0f}"


def ratio_text(r: float) -> str:
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def headline(pool: dict[str, Any], base: dict[str, Any], cmp: dict[str, Any]) -> str:
    name, bname = pool["name"], base["name"]
    if pool["accuracy"] is not None and base["accuracy"] is not None:
        lo, hi = pool["accuracy_ci95"]
        quality = (
            f"{name} is right {pct(pool['accuracy'])}% of the time (95% CI {pct(lo)}-{pct(hi)}%) "
            f"vs {pct(base['accuracy'])}% for {bname}"
        )
    else:
        quality = f"{name} vs {bname}: no reference answers to score against"
    ratio = cmp["cost_ratio"]
    cost = (
        f"costs {ratio_text(ratio)} as much per request"
        if ratio is not None
        else "its cost relative to the baseline is unknown (a model without a price, or no answers)"
    )
    delta = cmp["latency_p50_delta_ms"]
    if delta is None:
        latency = "latency unknown"
    elif delta >= 0:
        latency = f"adds {delta:.0f} ms at p50"
    else:
        latency = f"is {-delta:.0f} ms faster at p50"
    return f"{quality}, {cost} and {latency}."


def pairwise_sentence(cmp: dict[str, Any]) -> str | None:
    pw = cmp.get("pairwise")
    if not pw:
        return None
    n = pw["judged"]
    if not n:
        return f"The judge {pw['judge']} gave no usable preference."
    return (
        f"Judge {pw['judge']}, both orders: prefers {cmp['pool']} on {pw['wins']} of {n} items, "
        f"{cmp['baseline']} on {pw['losses']}, tie on {pw['ties']} ({pw['identical_answers']} identical answers)."
    )


def break_even_sentence(cmp: dict[str, Any]) -> str | None:
    be = cmp.get("break_even")
    if not be:
        return None
    base, pool, training = cmp["baseline"], cmp["pool"], be["training_usd"]
    if not be["known"]:
        return "Break-even unknown: a cost is unknown (a model without a price)."
    if be["never"]:
        return f"{pool} is not dearer per request than {base}: the ${training} of training never pays back."
    return (
        f"With ${training} of training, {base} is cheaper overall above {be['requests_per_month']:,} "
        f"requests a month than {pool}."
    )


def frontiers(systems: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The systems on the accuracy-vs-cost and accuracy-vs-p50 Pareto frontiers (those with the figures)."""
    cost = {n: (f["accuracy"], float(f["cost"]["mean_usd"])) for n, f in systems.items()
            if f["accuracy"] is not None and f["cost"]["mean_usd"] is not None}
    p50 = {n: (f["accuracy"], float(f["latency_ms"]["p50"])) for n, f in systems.items()
           if f["accuracy"] is not None and f["latency_ms"].get("p50") is not None}
    return {"accuracy_vs_cost": stats.pareto(cost), "accuracy_vs_p50": stats.pareto(p50)}


def build_summary(
    runner: Runner,
    scorer: Scorer,
    training: Decimal | None,
    *,
    dataset: str,
    url: str,
    command: list[str] | None = None,
) -> dict[str, Any]:
    plan: Plan = runner.plan
    systems = {s.name: system_figures(runner, s, scorer) for s in plan.systems}
    base = systems[plan.baseline.name]
    comparisons = []
    for pool in plan.pools:
        pw = pairwise_figures(runner, pool) if plan.judge is not None else None
        comparisons.append(comparison(systems[pool.name], base, pw, training))
    scores = {s.name: item_scores(runner, s, scorer) for s in plan.systems}
    names = list(systems)
    paired = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            t = stats.mcnemar(scores[a], scores[b])
            paired.append(
                {
                    "a": a, "b": b, "n": t.n, "a_only": t.a_only, "b_only": t.b_only, "p_value": t.p_value,
                    "difference": t.difference, "difference_ci95": list(t.difference_ci95),
                }
            )
    return {
        "dataset": dataset,
        "items": len(plan.items),
        "gateway": url,
        "command": command,
        "scorer": scorer.label,
        "baseline": plan.baseline.name,
        "pools": [p.name for p in plan.pools],
        "judge": plan.judge,
        "baseline_training_usd": money(training),
        "systems": systems,
        "comparisons": comparisons,
        "pareto": frontiers(systems),
        "paired": paired,
        "formulas": FORMULAS,
        #: what the reader must know before trusting the figures (e.g. a scorer that fits no reference)
        "warnings": [],
    }
