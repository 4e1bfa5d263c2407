"""Load a config in two steps: parse + validate each section, then check cross-references.

The result, :class:`GatewayConfig`, is immutable; a reload builds a new one and swaps it in whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.config.schema import (
    PROVIDER_CONFIG_TYPES,
    AuthConfig,
    DeploymentConfig,
    LoggingConfig,
    ModelConfig,
    OutlierDetection,
    PoolConfig,
    Price,
    ProviderConfig,
    RawConfig,
    Routing,
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
    """A model the gateway may call, with everything needed to call and bill it.

    A model served in one place is called as it is (``deployments`` holds just itself). A model with
    several deployments or with fallbacks is balanced: each attempt picks one of ``deployments``,
    whose own spec (provider, upstream name, price, timeouts) is what the provider is handed.
    """

    name: str
    upstream: str
    provider: str
    price: Price | None
    timeouts: Timeouts
    deployments: tuple[Deployment, ...] = ()
    fallbacks: tuple[str, ...] = ()
    routing: Routing = "least-inflight"
    outlier: OutlierDetection = field(default_factory=OutlierDetection)

    @property
    def balanced(self) -> bool:
        """Calls go through the balancer: several deployments, or fallbacks to step to."""
        return len(self.deployments) > 1 or bool(self.fallbacks)


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place a model is served. ``key`` labels it in metrics: ``provider/upstream``."""

    key: str
    spec: ModelSpec
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None


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
    _check_fallbacks(raw, issues)
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
            out[name] = cfg
    return out


def _models(raw: RawConfig, providers: Mapping[str, ProviderConfig], issues: list[ConfigIssue]) -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    known = ", ".join(providers) or "none defined"

    def provider_of(loc: Loc, name: str) -> ProviderConfig | None:
        provider = providers.get(name)
        if provider is None:
            issues.append(ConfigIssue(loc, f"unknown provider '{name}' (known: {known})"))
        return provider

    for name, m in raw.models.items():
        loc: Loc = ("models", name)
        if m.provider is not None:
            provider = provider_of((*loc, "provider"), m.provider)
            if provider is None:
                continue
            own = _spec(name, m.model or name, m.provider, m.price, m.timeouts or provider.timeouts)
            deployments: tuple[Deployment, ...] = (Deployment(f"{m.provider}/{own.upstream}", own),)
        else:
            found = [
                (d, provider_of((*loc, "deployments", i, "provider"), d.provider)) for i, d in enumerate(m.deployments)
            ]
            if any(p is None for _, p in found):
                continue
            deployments = _deployments(name, m, [(d, p) for d, p in found if p is not None])
        first = deployments[0].spec
        out[name] = ModelSpec(
            name=name,
            upstream=first.upstream,
            provider=first.provider,
            # What an estimate assumes before a deployment is picked: the model's price, else the dearest.
            price=m.price or _dearest(d.spec.price for d in deployments),
            timeouts=first.timeouts,
            deployments=deployments,
            fallbacks=tuple(m.fallbacks),
            routing=m.routing,
            outlier=m.outlier_detection,
        )
    return out


def _deployments(
    name: str, m: ModelConfig, found: list[tuple[DeploymentConfig, ProviderConfig]]
) -> tuple[Deployment, ...]:
    out: list[Deployment] = []
    seen: set[str] = set()
    for i, (d, provider) in enumerate(found):
        timeouts = d.timeouts or m.timeouts or provider.timeouts
        spec = _spec(name, d.model or name, d.provider, d.price or m.price, timeouts)
        key = f"{d.provider}/{spec.upstream}"
        if key in seen:  # the same upstream twice on one provider: told apart by position
            key = f"{key}#{i}"
        seen.add(key)
        out.append(Deployment(key, spec, d.weight, d.rpm, d.tpm))
    return tuple(out)


def _dearest(prices: Iterable[Price | None]) -> Price | None:
    known = [p for p in prices if p is not None]
    return max(known, key=lambda p: (p.output, p.input)) if known else None


def _spec(name: str, upstream: str, provider: str, price: Price | None, timeouts: Timeouts) -> ModelSpec:
    return ModelSpec(name=name, upstream=upstream, provider=provider, price=price, timeouts=timeouts)


def _check_fallbacks(raw: RawConfig, issues: list[ConfigIssue]) -> None:
    """Fallbacks name models (not pools), and never lead back to where they started."""
    models = raw.models
    known = ", ".join(models) or "none defined"
    for name, m in models.items():
        for i, fb in enumerate(m.fallbacks):
            loc: Loc = ("models", name, "fallbacks", i)
            if fb in raw.pools:
                issues.append(ConfigIssue(loc, f"'{fb}' is a pool; a fallback must be a model"))
            elif fb not in models:
                issues.append(ConfigIssue(loc, f"unknown model '{fb}' (known: {known})"))
            else:
                cycle = _cycle_through(models, name, fb)
                if cycle is not None:
                    issues.append(ConfigIssue(loc, "fallback cycle: " + " -> ".join(cycle)))


def _cycle_through(models: Mapping[str, ModelConfig], start: str, first: str) -> list[str] | None:
    """The path ``start -> first -> ... -> start`` along fallbacks, if there is one (depth first)."""
    stack: list[tuple[str, list[str]]] = [(first, [start, first])]
    visited: set[str] = set()
    while stack:
        name, path = stack.pop()
        if name == start:
            return path
        if name in visited or name not in models:
            continue
        visited.add(name)
        for nxt in reversed(models[name].fallbacks):
            stack.append((nxt, [*path, nxt]))
    return None


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
