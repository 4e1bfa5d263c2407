"""What reads the ledger: per-pool statistics, one request, spend, the fine-tuning export.

Everything here is a query on the database, so it covers every worker and replica that writes to it and
survives restarts. Percentiles use the same definition as the in-memory store and the compare report
(nearest rank), fetched as one row at an offset of the sorted column, so no query reads a whole column
into memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.books.ledger.entry import from_pico
from gateway.books.ledger.store import utc
from gateway.books.ledger.tables import calls, requests

GroupBy = Literal["key", "pool", "model", "day"]
GROUPS: tuple[GroupBy, ...] = ("key", "pool", "model", "day")

_SINCE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``24h``, ``7d``, ``30m``, ``2w``, or an ISO 8601 time (UTC unless it says otherwise)."""
    m = _SINCE.match(value.strip())
    now = now or datetime.now(UTC)
    if m:
        return now - timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        return utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise ValueError(f"since must be a duration like 24h, 7d, 30m or an ISO 8601 time, not '{value}'") from None


async def _percentiles(
    conn: AsyncConnection, column: sa.ColumnElement[Any], where: Sequence[sa.ColumnElement[bool]], qs: Sequence[float]
) -> list[float | None]:
    """Nearest-rank percentiles, q in (0, 100]: the ceil(q/100 * n)-th smallest value (see
    :func:`gateway.books.stats.percentile`)."""
    cond = sa.and_(column.is_not(None), *where)
    n = (await conn.execute(sa.select(sa.func.count()).select_from(requests).where(cond))).scalar_one()
    out: list[float | None] = []
    for q in qs:
        if not n:
            out.append(None)
            continue
        rank = max(1, math.ceil(q / 100 * n))
        value = (
            await conn.execute(sa.select(column).where(cond).order_by(column).offset(rank - 1).limit(1))
        ).scalar_one()
        out.append(round(value, 3))
    return out


def _mean(total_pico: Any, n: int) -> Decimal | None:
    total = from_pico(total_pico)
    return total / n if total is not None and n else None


def _rate(n: int, total: int) -> float | None:
    return round(n / total, 4) if total else None


async def stats(
    engine: AsyncEngine, pools: Mapping[str, Mapping[str, Any]], since: datetime | None
) -> dict[str, Any]:
    """``GET /v1/fusion/stats`` from the ledger; ``pools``: name -> {"mode", "baseline"}, in config order."""
    r = requests.c
    window = [r.created_at >= since] if since is not None else []
    out = []
    async with engine.connect() as conn:
        for name, info in pools.items():
            fused = [r.pool == name, r.kind == "pool", *window]
            outcomes: dict[str, int] = dict(
                (
                    await conn.execute(
                        sa.select(
                            sa.case((r.status != 200, "error"), (r.degraded, "degraded"), else_="ok"),
                            sa.func.count(),
                        )
                        .where(*fused, r.status != 499)
                        .group_by(sa.literal_column("1"))
                    )
                ).all()
            )
            ok = [*fused, r.status == 200]
            f_n, f_cost = (
                await conn.execute(sa.select(sa.func.count(r.cost_pusd), sa.func.sum(r.cost_pusd)).where(*ok))
            ).one()
            f_p50, f_p95 = await _percentiles(conn, r.latency_ms, ok, (50, 95))
            base = [r.pool == name, r.kind == "baseline", *window]
            b_ok = [*base, r.status == 200]
            b_samples, b_n, b_cost = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.count(r.member_cost_pusd), sa.func.sum(r.member_cost_pusd))
                    .where(*b_ok)
                )
            ).one()
            b_errors = (
                await conn.execute(sa.select(sa.func.count()).where(*base, r.status != 200))
            ).scalar_one()
            b_p50, b_p95 = await _percentiles(conn, r.latency_ms, b_ok, (50, 95))
            ratio_n = (
                await conn.execute(sa.select(sa.func.count(r.latency_ratio)).where(*b_ok))
            ).scalar_one()
            (lat_ratio,) = await _percentiles(conn, r.latency_ratio, b_ok, (50,))
            (cost_ratio,) = await _percentiles(conn, r.cost_ratio, b_ok, (50,))
            cmp_: dict[str, int] = dict(
                (
                    await conn.execute(
                        sa.select(r.comparison, sa.func.count())
                        .where(*b_ok, r.comparison.is_not(None))
                        .group_by(r.comparison)
                    )
                ).all()
            )
            wins, ties, losses = cmp_.get("fusion", 0), cmp_.get("tie", 0), cmp_.get("baseline", 0)
            compared = wins + ties + losses
            fused_mean = _mean(f_cost, f_n)
            cascade = await _cascade(conn, [*ok, r.escalated.is_not(None)], fused_mean) \
                if info.get("mode") == "cascade" else None
            out.append(
                {
                    "pool": name,
                    "mode": info.get("mode"),
                    "requests": {
                        "ok": outcomes.get("ok", 0),
                        "degraded": outcomes.get("degraded", 0),
                        "error": outcomes.get("error", 0),
                        "total": sum(outcomes.values()),
                    },
                    "fusion": {
                        "samples": (outcomes.get("ok", 0) + outcomes.get("degraded", 0)),
                        "latency_ms": {"p50": f_p50, "p95": f_p95},
                        "mean_cost_usd": fused_mean,
                    },
                    "baseline": {
                        "model": info.get("baseline"),
                        "samples": b_samples,
                        "errors": b_errors,
                        "latency_ms": {"p50": b_p50, "p95": b_p95},
                        "mean_cost_usd": _mean(b_cost, b_n),
                    },
                    "ratios": {"samples": ratio_n, "latency_p50": lat_ratio, "cost_p50": cost_ratio},
                    **({"cascade": cascade} if cascade is not None else {}),
                    "comparison": {
                        "wins": wins,
                        "ties": ties,
                        "losses": losses,
                        "errors": cmp_.get("error", 0),
                        "n": compared,
                        "win_rate": _rate(wins, compared),
                        "tie_rate": _rate(ties, compared),
                        "loss_rate": _rate(losses, compared),
                    },
                }
            )
    return {
        "object": "fusion.stats",
        "source": "ledger",
        "since": int(since.timestamp()) if since is not None else None,
        "pools": out,
    }


async def _cascade(
    conn: AsyncConnection, answered: Sequence[sa.ColumnElement[bool]], fused_mean: Decimal | None
) -> dict[str, Any]:
    """Escalation rate, and what the cascade saved per request against running the pool every time (as
    :func:`gateway.books.stats._cascade` computes it from memory)."""
    r = requests.c
    n, escalated, esc_n, esc_cost = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.case((r.escalated.is_(True), 1))),
                sa.func.count(sa.case((r.escalated.is_(True), r.escalation_cost_pusd))),
                sa.func.sum(sa.case((r.escalated.is_(True), r.escalation_cost_pusd))),
            ).where(*answered)
        )
    ).one()
    pool_cost = _mean(esc_cost, esc_n)
    saved = pool_cost - fused_mean if pool_cost is not None and fused_mean is not None else None
    return {
        "requests": n,
        "escalated": escalated,
        "escalation_rate": _rate(escalated, n),
        "pool_mean_cost_usd": pool_cost,
        "saved_usd_per_request": saved,
        "saved_rate": float(round(saved / pool_cost, 4)) if saved is not None and pool_cost else None,
    }


def _request_json(row: sa.RowMapping) -> dict[str, Any]:
    return {
        "request_id": row["request_id"],
        "parent_id": row["parent_id"],
        "created": utc(row["created_at"]).isoformat(),
        "kind": row["kind"],
        "endpoint": row["endpoint"],
        "key": row["key_name"],
        "model": row["model"],
        "pool": row["pool"],
        "mode": row["mode"],
        "status": row["status"],
        "error_code": row["error_code"],
        "stream": row["stream"],
        "degraded": row["degraded"],
        "latency_ms": {
            "total": row["latency_ms"],
            "fanout": row["fanout_ms"],
            "slowest_member": row["slowest_member_ms"],
            "rounds": row["rounds_ms"],
            "judge": row["judge_ms"],
            "gateway": row["gateway_ms"],
            "escalation": row["escalation_ms"],
        },
        "cost_usd": from_pico(row["cost_pusd"]),
        "cost_by_role": {"member": from_pico(row["member_cost_pusd"]), "judge": from_pico(row["judge_cost_pusd"])},
        "cost_saved_usd": from_pico(row["saved_cost_pusd"]),
        "usage": {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
                  "usage_estimated": row["usage_estimated"]},
        "judge": {"model": row["judge_model"], "status": row["judge_status"]} if row["judge_model"] else None,
        "winner": row["winner"],
        "winner_index": row["winner_index"],
        "baseline_sampled": row["baseline_sampled"],
        "latency_ratio": row["latency_ratio"],
        "cost_ratio": row["cost_ratio"],
        "comparison": row["comparison"],
    }


def _with_fusion(row: sa.RowMapping) -> dict[str, Any]:
    """One request in full: with the ``fusion`` object it was answered with, and its judge's verdict."""
    out = _request_json(row)
    fusion = row["fusion"]
    out["fusion"] = fusion
    if out["judge"] is not None:
        judge = fusion.get("judge") if isinstance(fusion, dict) else None
        out["judge"]["verdict"] = judge.get("verdict") if isinstance(judge, dict) else None
    return out


def _call_json(row: sa.RowMapping) -> dict[str, Any]:
    return {
        "role": row["role"],
        "round": row["round"],
        "member": row["member"],
        "model": row["model"],
        "provider": row["provider"],
        "answered_by": row["answered_by"],
        "deployment": row["deployment"],
        "fallback_reason": row["fallback_reason"],
        "status": row["status"],
        "error_type": row["error_type"],
        "attempts": row["attempts"],
        "latency_ms": row["latency_ms"],
        "ttfb_ms": row["ttfb_ms"],
        "usage": {
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "cached_tokens": row["cached_tokens"],
            "reasoning_tokens": row["reasoning_tokens"],
        }
        if row["prompt_tokens"] is not None
        else None,
        "usage_estimated": row["usage_estimated"],
        "cost_usd": from_pico(row["cost_pusd"]),
    }


async def _calls_of(conn: AsyncConnection, row_id: str) -> list[dict[str, Any]]:
    result = await conn.execute(sa.select(calls).where(calls.c.request_row == row_id).order_by(calls.c.seq))
    return [_call_json(c) for c in result.mappings()]


async def request(engine: AsyncEngine, request_id: str, key: str | None) -> dict[str, Any] | None:
    """One request with its calls and its shadow baseline (if sampled); ``key``: only that key's requests."""
    r = requests.c
    cond = [r.request_id == request_id, r.kind != "baseline"]
    if key is not None:
        cond.append(r.key_name == key)
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(requests).where(*cond).order_by(r.created_at.desc()).limit(1))
        ).mappings().first()
        if row is None:
            return None
        out = _with_fusion(row)
        out["object"] = "fusion.request"
        out["calls"] = await _calls_of(conn, row["row_id"])
        out["messages"], out["answer"] = row["messages"], row["answer"]
        shadow = (
            await conn.execute(sa.select(requests).where(r.parent_id == request_id, r.kind == "baseline").limit(1))
        ).mappings().first()
        if shadow is not None:
            out["baseline"] = _with_fusion(shadow) | {"calls": await _calls_of(conn, shadow["row_id"])}
        return out


async def recent(
    engine: AsyncEngine, *, key: str | None, pool: str | None, status: int | None, limit: int
) -> list[dict[str, Any]]:
    """The latest requests (shadow baselines excluded), newest first."""
    r = requests.c
    cond = [r.kind != "baseline"]
    if key is not None:
        cond.append(r.key_name == key)
    if pool is not None:
        cond.append(r.model == pool)
    if status is not None:
        cond.append(r.status == status)
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(requests).where(*cond).order_by(r.created_at.desc()).limit(limit))
        return [_request_json(row) for row in result.mappings()]


async def spend(
    engine: AsyncEngine, group_by: GroupBy, since: datetime | None, key: str | None
) -> list[dict[str, Any]]:
    """Exact spend per key, pool (or model called directly), upstream model, or UTC day; dearest first."""
    r = requests.c
    cond: list[sa.ColumnElement[bool]] = []
    if since is not None:
        cond.append(r.created_at >= since)
    if key is not None:
        cond.append(r.key_name == key)
    if group_by == "model":
        c = calls.c
        group: sa.ColumnElement[Any] = sa.func.coalesce(c.answered_by, c.model)  # a fallback bills as itself
        stmt = (
            sa.select(group, sa.func.sum(c.cost_pusd), sa.func.count(), sa.func.count(c.cost_pusd))
            .join(requests, sa.and_(r.row_id == c.request_row, r.created_at == c.created_at))
            .where(*cond)
            .group_by(group)
        )
        what = "calls"
    else:
        group = {"key": r.key_name, "pool": r.model, "day": sa.func.date(r.created_at)}[group_by]
        stmt = (
            sa.select(group, sa.func.sum(r.cost_pusd), sa.func.count(), sa.func.count(r.cost_pusd))
            .where(*cond, r.kind != "refused")
            .group_by(group)
        )
        what = "requests"
    async with engine.connect() as conn:
        result = (await conn.execute(stmt)).all()
    out = [
        {
            group_by: str(name),
            "cost_usd": from_pico(total) if total is not None else Decimal(0),
            what: n,
            "unknown_cost": n - priced,
        }
        for name, total, n, priced in result
    ]
    out.sort(key=lambda x: (-x["cost_usd"], x[group_by]))
    return out


async def export(
    engine: AsyncEngine, pool: str, since: datetime | None, *, winners_only: bool
) -> AsyncIterator[dict[str, Any]]:
    """The pool's answered requests as OpenAI chat fine-tuning lines: the prompt, then the fused answer.

    ``winners_only``: only answers the pairwise judge preferred to the baseline's (sampled requests)."""
    r = requests.c
    cond = [r.kind == "pool", r.pool == pool, r.status == 200, r.messages.is_not(None), r.answer.is_not(None)]
    if since is not None:
        cond.append(r.created_at >= since)
    if winners_only:
        won = sa.select(r.parent_id).where(r.kind == "baseline", r.pool == pool, r.comparison == "fusion")
        cond.append(r.request_id.in_(won))
    async with engine.connect() as conn:
        result = await conn.stream(sa.select(r.messages, r.answer).where(*cond).order_by(r.created_at))
        async for messages, answer in result:
            yield {"messages": [*messages, _training_message(answer)]}


def _training_message(answer: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": answer.get("content")}
    if answer.get("tool_calls"):
        out["tool_calls"] = answer["tool_calls"]
    return out


async def pools(engine: AsyncEngine, since: datetime | None) -> dict[str, dict[str, Any]]:
    """The pools the ledger has records of (for a report without a running gateway): name -> mode, baseline."""
    r = requests.c
    window = [r.created_at >= since] if since is not None else []
    async with engine.connect() as conn:
        modes = (
            await conn.execute(
                sa.select(r.pool, sa.func.max(r.mode))
                .where(r.kind == "pool", *window)
                .group_by(r.pool)
                .order_by(r.pool)
            )
        ).all()
        baselines = dict(
            (
                await conn.execute(
                    sa.select(r.pool, sa.func.max(r.model)).where(r.kind == "baseline", *window).group_by(r.pool)
                )
            ).all()
        )
    return {name: {"mode": mode, "baseline": baselines.get(name)} for name, mode in modes}
