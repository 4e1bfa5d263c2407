"""From a request for a pool to a plan: members, judge, mode, with the caller's per-request overrides.

Everything that can be refused is refused here, before any upstream call: unknown override keys, a
member subset that is not a subset, tools in a mode that cannot honour them, ``n > 1``, a ``max_tokens``
over the pool's cap, and what a judge-written answer cannot honour (:mod:`gateway.pipeline.contract`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from fusion_modes import MODES
from fusion_modes.base import FinalMode
from fusion_modes.criteria import CRITERIA_PRESETS, criteria_text, is_preset_name
from gateway.config.loader import GatewayConfig, ModelSpec
from gateway.config.pools import Mode, PoolConfig, unknown_criteria_preset
from gateway.pipeline.contract import WriterContract, writer_contract
from gateway.wire.errors import InvalidRequest
from gateway.wire.protocol import ChatRequest

_OVERRIDES = frozenset({"mode", "criteria", "rounds", "members", "events", "cache"})
_MAX_CRITERIA = 2000


@dataclass(frozen=True)
class PoolPlan:
    name: str
    pool: PoolConfig
    mode: Mode
    members: list[tuple[int, ModelSpec]]  # (position in the pool's members, model)
    judge: ModelSpec | None
    criteria: str | None
    rounds: int
    final: FinalMode
    events: bool
    #: the body every member gets (model set per member)
    body: dict[str, Any]
    #: cascade: the pool to escalate to (members are then the first model and the check's second model)
    escalate: PoolPlan | None = None
    #: what the judge's writing call carries when it writes the answer (merge, debate ending in merge)
    writer: WriterContract = field(default_factory=WriterContract)


def plan_pool(config: GatewayConfig, name: str, pool: PoolConfig, req: ChatRequest) -> PoolPlan:
    opts = dict(req.fusion or {})
    unknown = sorted(set(opts) - _OVERRIDES)
    if unknown:
        raise InvalidRequest(
            f"unknown fusion option '{unknown[0]}' (allowed: {', '.join(sorted(_OVERRIDES))})",
            param=f"fusion.{unknown[0]}",
            code="invalid_fusion_option",
        )
    if pool.mode == "cascade":
        return _plan_cascade(config, name, pool, req, opts)
    mode = opts.get("mode", pool.mode)
    if mode not in MODES:
        raise InvalidRequest(
            f"'fusion.mode' must be one of {', '.join(MODES)}", param="fusion.mode", code="invalid_value"
        )
    criteria = opts.get("criteria", pool.judge.criteria if pool.judge else None)
    if criteria is not None and (not isinstance(criteria, str) or len(criteria) > _MAX_CRITERIA):
        raise InvalidRequest(
            f"'fusion.criteria' must be a string of at most {_MAX_CRITERIA} characters",
            param="fusion.criteria",
            code="invalid_value",
        )
    if criteria is not None and is_preset_name(criteria) and criteria not in CRITERIA_PRESETS:
        raise InvalidRequest(
            f"'fusion.criteria': {unknown_criteria_preset(criteria)}", param="fusion.criteria", code="invalid_value"
        )
    debate = pool.debate
    rounds = opts.get("rounds", debate.rounds if debate else 2)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 0 <= rounds <= 6:
        raise InvalidRequest(
            "'fusion.rounds' must be an integer from 0 to 6", param="fusion.rounds", code="invalid_value"
        )
    events = opts.get("events", False)
    if not isinstance(events, bool):
        raise InvalidRequest("'fusion.events' must be a boolean", param="fusion.events", code="invalid_type")
    if events and not req.stream:
        raise InvalidRequest("'fusion.events' needs 'stream': true", param="fusion.events", code="invalid_value")
    members = _members(config, pool, opts.get("members"))
    _check_request(name, pool, mode, req)
    if len(members) > 1 and pool.judge is None:  # config check makes this unreachable for pools > 1
        raise InvalidRequest(f"pool '{name}' has no judge", code="invalid_pool")
    judge = config.models[pool.judge.model] if pool.judge else None
    final: FinalMode = debate.final if debate else "best-of"
    body = _member_body(pool, req)
    writes = mode == "merge" or (mode == "debate" and final == "merge")
    return PoolPlan(
        name=name,
        pool=pool,
        mode=cast(Mode, mode),
        members=members,
        judge=judge,
        criteria=criteria_text(criteria),
        rounds=rounds,
        final=final,
        events=events,
        body=body,
        writer=writer_contract(name, mode, body) if writes else WriterContract(),
    )


def _plan_cascade(
    config: GatewayConfig, name: str, pool: PoolConfig, req: ChatRequest, opts: dict[str, Any]
) -> PoolPlan:
    """A cascade's own calls (the first model, the check's second model, its judge) and the pool it escalates to.

    Overrides that shape a pool (mode, members, rounds) are refused: they belong to the escalation pool."""
    for key in ("mode", "members", "rounds"):
        if key in opts:
            raise InvalidRequest(
                f"'fusion.{key}' cannot be set on cascade '{name}'", param=f"fusion.{key}", code="invalid_fusion_option"
            )
    assert pool.first is not None and pool.check is not None and pool.escalate is not None  # checked at load
    check = pool.check
    members = [(0, config.models[pool.first])]
    if check.agree_with is not None:
        members.append((1, config.models[check.agree_with]))
    escalate = plan_pool(config, pool.escalate, config.pools[pool.escalate], req)
    return PoolPlan(
        name=name,
        pool=pool,
        mode="cascade",
        members=members,
        judge=config.models[check.judge] if check.judge is not None else None,
        criteria=escalate.criteria,
        rounds=0,
        final="best-of",
        events=escalate.events,
        body=_member_body(pool, req),
        escalate=escalate,
    )


def _members(config: GatewayConfig, pool: PoolConfig, subset: Any) -> list[tuple[int, ModelSpec]]:
    everyone = [(i, config.models[m]) for i, m in enumerate(pool.members)]
    if subset is None:
        return everyone
    if not isinstance(subset, list) or not subset or not all(isinstance(m, str) for m in subset):
        raise InvalidRequest(
            "'fusion.members' must be a non-empty array of member names", param="fusion.members", code="invalid_type"
        )
    available = Counter(pool.members)
    wanted = Counter(subset)
    for m, n in wanted.items():
        if available[m] < n:
            raise InvalidRequest(
                f"'fusion.members': '{m}' is not a member of this pool"
                + (f" {n} times" if available[m] else "")
                + f" (members: {', '.join(pool.members)})",
                param="fusion.members",
                code="invalid_value",
            )
    picked: list[tuple[int, ModelSpec]] = []
    for i, spec in everyone:
        if wanted[spec.name] > 0:
            wanted[spec.name] -= 1
            picked.append((i, spec))
    return picked


def _check_request(name: str, pool: PoolConfig, mode: str, req: ChatRequest) -> None:
    body = req.body
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest(
            f"'n' must be 1 for pool '{name}': a pool returns one fused answer", param="n", code="invalid_value"
        )
    if body.get("tools") and mode != "best-of":
        raise InvalidRequest(
            f"'tools' are supported by mode best-of only (pool '{name}' runs {mode}): a merged or debated answer "
            "cannot carry one member's tool calls faithfully. Use a best-of pool, or fusion.mode 'best-of'.",
            param="tools",
            code="unsupported_for_mode",
        )
    cap = pool.max_tokens_cap
    if cap is not None:
        for key in ("max_tokens", "max_completion_tokens"):
            v = body.get(key)
            if isinstance(v, int) and v > cap:
                if pool.max_tokens_policy == "reject":
                    raise InvalidRequest(
                        f"'{key}' {v} exceeds pool '{name}' cap of {cap}", param=key, code="max_tokens_exceeded"
                    )
                body[key] = cap


def _member_body(pool: PoolConfig, req: ChatRequest) -> dict[str, Any]:
    body = dict(req.body)
    body["stream"] = True
    # Usage is needed for exact cost whether or not the caller asked for it.
    opts = body.get("stream_options")
    body["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    if pool.max_tokens_cap is not None and "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = pool.max_tokens_cap
    return body
