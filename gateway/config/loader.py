"""Load a config in two steps: parse + validate each section, then check cross-references.

The result, :class:`GatewayConfig`, is immutable; a reload builds a new one and swaps it in whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.config.schema import (
    PROVIDER_CONFIG_TYPES,
    AuthConfig,
    LoggingConfig,
    ModelConfig,
    PoolConfig,
    Price,
    ProviderConfig,
    RawConfig,
    ServerConfig,
    StateConfig,
    Timeouts,
)
from gateway.config.source import ConfigIssue, Loc, Source, load_source, parse_source

M = TypeVar("M", bound=BaseModel)

DEFAULT_CONFIG_PATH = "config/gateway.yaml"
CONFIG_ENV = "FUSION_GATEWAY_CONFIG"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model the gateway may call, with everything needed to call and bill it."""

    name: str
    upstream: str
    provider: str
    price: Price | None
    timeouts: Timeouts


@dataclass(frozen=True)
class GatewayConfig:
    path: str
    server: ServerConfig
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelSpec]
    pools: Mapping[str, PoolConfig]
    raw: RawConfig = field(repr=False)

    @property
    def auth(self) -> AuthConfig:
        return self.raw.auth

    @property
    def state(self) -> StateConfig:
        return self.raw.state

    @property
    def logging(self) -> LoggingConfig:
        return self.raw.logging

    def names(self) -> list[str]:
        """Every name a caller may put in ``model``: models first, then pools."""
        return [*self.models, *self.pools]


def default_config_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_config(path: str, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    return build_config(load_source(path, environ=environ))


def parse_config(text: str, path: str = "<config>", *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    return build_config(parse_source(text, path, environ=os.environ if environ is None else environ))


def build_config(source: Source) -> GatewayConfig:
    data = source.data
    if not isinstance(data, dict):
        raise source.error([ConfigIssue((), "the top level must be a mapping")])
    issues: list[ConfigIssue] = []
    raw = _validate(RawConfig, data, (), issues)
    if raw is None:
        raise source.error(issues)
    providers = _providers(raw, issues)
    if issues:
        raise source.error(issues)
    models = _models(raw, providers, issues)
    _check_pools(raw, issues)
    _check_keys(raw, issues)
    if issues:
        raise source.error(issues)
    return GatewayConfig(
        path=source.path,
        server=raw.server,
        providers=providers,
        models=models,
        pools=dict(raw.pools),
        raw=raw,
    )


def _validate(cls: type[M], data: Any, loc: Loc, issues: list[ConfigIssue]) -> M | None:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            issues.append(ConfigIssue((*loc, *err["loc"]), _message(err)))
        return None


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _providers(raw: RawConfig, issues: list[ConfigIssue]) -> dict[str, ProviderConfig]:
    out: dict[str, ProviderConfig] = {}
    known = ", ".join(PROVIDER_CONFIG_TYPES)
    for name, body in raw.providers.items():
        loc: Loc = ("providers", name)
        kind = body.get("type")
        cls = PROVIDER_CONFIG_TYPES.get(str(kind)) if kind is not None else None
        if cls is None:
            what = f"unknown provider type '{kind}'" if kind is not None else "required key 'type' is missing"
            issues.append(ConfigIssue((*loc, "type") if kind is not None else loc, f"{what} (known: {known})"))
            continue
        cfg = _validate(cls, body, loc, issues)
        if cfg is not None:
            out[name] = cfg  # type: ignore[assignment]
    return out


def _models(raw: RawConfig, providers: Mapping[str, ProviderConfig], issues: list[ConfigIssue]) -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    known = ", ".join(providers) or "none defined"
    for name, m in raw.models.items():
        provider = providers.get(m.provider)
        if provider is None:
            issues.append(
                ConfigIssue(("models", name, "provider"), f"unknown provider '{m.provider}' (known: {known})")
            )
            continue
        out[name] = _spec(name, m, provider)
    return out


def _spec(name: str, m: ModelConfig, provider: ProviderConfig) -> ModelSpec:
    return ModelSpec(
        name=name,
        upstream=m.model or name,
        provider=m.provider,
        price=m.price,
        timeouts=m.timeouts or provider.timeouts,
    )


def _check_keys(raw: RawConfig, issues: list[ConfigIssue]) -> None:
    seen: set[str] = set()
    for i, key in enumerate(raw.auth.keys):
        loc: Loc = ("auth", "keys", i)
        if key.name in seen:
            issues.append(ConfigIssue((*loc, "name"), f"duplicate key name '{key.name}'"))
        seen.add(key.name)
        for j, pool in enumerate(key.pools):
            if pool != "*" and pool not in raw.pools:
                issues.append(ConfigIssue((*loc, "pools", j), f"unknown pool '{pool}'"))
        for j, model in enumerate(key.models):
            if model != "*" and model not in raw.models:
                issues.append(ConfigIssue((*loc, "models", j), f"unknown model '{model}'"))


def _check_pools(raw: RawConfig, issues: list[ConfigIssue]) -> None:
    # Names are checked against every model written in the file, valid or not: a model with its own
    # error is reported once, not again by every pool that uses it.
    models = raw.models
    known = ", ".join(models) or "none defined"

    def check_model(loc: Loc, name: str, what: str) -> None:
        if name in raw.pools:
            issues.append(ConfigIssue(loc, f"'{name}' is a pool; a {what} must be a model (no pool inside a pool)"))
        elif name not in models:
            issues.append(ConfigIssue(loc, f"unknown model '{name}' (known: {known})"))

    for name, pool in raw.pools.items():
        loc: Loc = ("pools", name)
        if name in raw.models:
            issues.append(ConfigIssue(loc, f"'{name}' is already a model name; pools and models share one namespace"))
        if pool.mode == "cascade":
            _check_cascade(raw, loc, pool, check_model, issues)
            continue
        for key in ("first", "check", "escalate"):
            if getattr(pool, key) is not None:
                issues.append(ConfigIssue((*loc, key), "only meaningful with mode: cascade"))
        if not pool.members:
            issues.append(ConfigIssue((*loc, "members"), f"at least 1 member is needed (mode: {pool.mode})"))
        for i, member in enumerate(pool.members):
            check_model((*loc, "members", i), member, "member")
        if pool.judge is not None:
            check_model((*loc, "judge", "model"), pool.judge.model, "judge")
        elif len(pool.members) > 1 or pool.mode == "debate":
            issues.append(ConfigIssue(loc, "a judge is required when a pool has more than one member"))
        if pool.quorum is not None and pool.quorum > len(pool.members):
            issues.append(
                ConfigIssue((*loc, "quorum"), f"quorum {pool.quorum} exceeds the {len(pool.members)} members")
            )
        if pool.max_cost_usd is not None and pool.max_tokens_cap is None:
            issues.append(
                ConfigIssue((*loc, "max_cost_usd"), "needs max_tokens_cap: without it the worst case has no bound")
            )
        if pool.agreement is not None and pool.agreement.min > len(pool.members):
            issues.append(
                ConfigIssue(
                    (*loc, "agreement", "min"),
                    f"agreement min {pool.agreement.min} exceeds the {len(pool.members)} members",
                )
            )
        if pool.debate is not None and pool.mode != "debate":
            issues.append(ConfigIssue((*loc, "debate"), "only meaningful with mode: debate"))
        if pool.baseline is not None:
            check_model((*loc, "baseline", "model"), pool.baseline.model, "baseline")
            if pool.baseline.compare_judge is not None:
                check_model((*loc, "baseline", "compare_judge"), pool.baseline.compare_judge, "comparison judge")
            elif pool.baseline.compare == "judge" and pool.judge is None:
                issues.append(
                    ConfigIssue((*loc, "baseline", "compare"), "compare: judge needs the pool's judge or compare_judge")
                )


def _check_cascade(
    raw: RawConfig, loc: Loc, pool: PoolConfig, check_model: Callable[[Loc, str, str], None], issues: list[ConfigIssue]
) -> None:
    """A cascade: a first model, a check, and a pool to escalate to that is not itself a cascade."""
    for key in ("first", "check", "escalate"):
        if getattr(pool, key) is None:
            issues.append(ConfigIssue((*loc, key), "required key is missing (mode: cascade)"))
    for key in ("members", "judge", "agreement", "debate", "quorum", "grace_ms"):
        value = getattr(pool, key)
        if value not in (None, []):
            issues.append(ConfigIssue((*loc, key), "not used by mode: cascade (the escalation pool has its own)"))
    if pool.first is not None:
        check_model((*loc, "first"), pool.first, "cascade's first model")
    if pool.check is not None:
        if pool.check.agree_with is not None:
            check_model((*loc, "check", "agree_with"), pool.check.agree_with, "check model")
        if pool.check.judge is not None:
            check_model((*loc, "check", "judge"), pool.check.judge, "check judge")
    if pool.escalate is not None:
        target = raw.pools.get(pool.escalate)
        if target is None:
            known = ", ".join(n for n, p in raw.pools.items() if p.mode != "cascade") or "none defined"
            issues.append(ConfigIssue((*loc, "escalate"), f"unknown pool '{pool.escalate}' (known: {known})"))
        elif target.mode == "cascade":
            issues.append(ConfigIssue((*loc, "escalate"), f"'{pool.escalate}' is a cascade; escalate to a pool"))
