"""Load a config in two steps: parse + validate each section, then check cross-references.

The result, :class:`GatewayConfig`, is immutable; a reload builds a new one and swaps it in whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from gateway.config.models import DeploymentConfig, ModelConfig, OutlierDetection, Price, Routing
from gateway.config.pools import PoolConfig
from gateway.config.providers import PROVIDER_CONFIG_TYPES, ProviderConfig, Timeouts
from gateway.config.schema import AuthConfig, LedgerConfig, LoggingConfig, RawConfig, StateConfig
from gateway.config.server import ServerConfig
from gateway.config.source import ConfigIssue, Loc, Source, load_source, parse_source
from gateway.config.suggest import closest, unknown

M = TypeVar("M", bound=BaseModel)

DEFAULT_CONFIG_PATH = "config/gateway.yaml"
CONFIG_ENV = "FUSION_GATEWAY_CONFIG"
#: the offline default config and the commented examples, shipped inside the package
PACKAGED_DEFAULTS = Path(__file__).resolve().parent.parent / "defaults"


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

    @property
    def ledger(self) -> LedgerConfig:
        return self.raw.ledger

    def names(self) -> list[str]:
        """Every name a caller may put in ``model``: models first, then pools."""
        return [*self.models, *self.pools]


def default_config_path(environ: Mapping[str, str] | None = None) -> str:
    """``$FUSION_GATEWAY_CONFIG``, else ``config/gateway.yaml`` if there is one, else the packaged default.

    The last step is what makes ``pip install fusion-gateway && fusion-gateway serve`` work anywhere.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return explicit
    if os.path.exists(DEFAULT_CONFIG_PATH):
        return DEFAULT_CONFIG_PATH
    return str(PACKAGED_DEFAULTS / "gateway.yaml")


def load_config(path: str, *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    return build_config(load_source(path, environ=environ))


def load_server_config(path: str) -> ServerConfig:
    """Only the ``server:`` section of a config: where a running gateway listens, for the client commands.

    The rest of the file is not validated, and environment variables elsewhere (API keys the client
    does not have) need not be set.
    """
    source = load_source(path, environ=os.environ)
    data = source.data if isinstance(source.data, dict) else {}
    issues = [i for i in source.issues if i.loc[:1] == ("server",)]
    server = _validate(ServerConfig, data.get("server", {}), ("server",), issues)
    if server is None or issues:
        raise source.error(issues)
    return server


def server_url(server: ServerConfig) -> str:
    """How a client on this machine reaches a gateway listening as ``server`` says."""
    host = server.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"  # listening everywhere: loopback is one of the addresses
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{server.port}" if ":" in host else f"http://{host}:{server.port}"


def parse_config(text: str, path: str = "<config>", *, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    return build_config(parse_source(text, path, environ=os.environ if environ is None else environ))


def build_config(source: Source) -> GatewayConfig:
    """Every error of the file in one pass: each section and each entry is validated on its own, and
    names are cross-checked even where the entry that holds them has errors of its own."""
    data = source.data
    if not isinstance(data, dict):
        raise source.error([ConfigIssue((), "the top level must be a mapping")])
    issues: list[ConfigIssue] = list(source.issues)
    for key in data:
        if key not in RawConfig.model_fields:
            issues.append(ConfigIssue((key,), _unknown_key(key, RawConfig.model_fields)))
    for key in ("server", "auth", "state", "cache", "logging", "tracing", "ledger"):
        if key in data:
            _validate(_unwrap(RawConfig.model_fields[key].annotation), data[key], (key,), issues)
    sections = {key: _entries(data, key, issues) for key in ("providers", "models", "pools")}
    providers = _providers(sections["providers"], issues)
    models: dict[str, ModelConfig] = {}
    for name, body in sections["models"].items():
        _check_name(("models", name, "provider"), _get(body, "provider"), sections["providers"], "provider", issues)
        deployments = _get(body, "deployments")
        for i, d in enumerate(deployments if isinstance(deployments, list) else []):
            where: Loc = ("models", name, "deployments", i, "provider")
            _check_name(where, _get(d, "provider"), sections["providers"], "provider", issues)
        model = _validate(ModelConfig, body, ("models", name), issues)
        if model is not None:
            models[name] = model
    pools: dict[str, PoolConfig] = {}
    for name, body in sections["pools"].items():
        _check_pool_names(name, body, sections["models"], sections["pools"], issues)
        pool = _validate(PoolConfig, body, ("pools", name), issues)
        if pool is not None:
            pools[name] = pool
            _check_pool(name, pool, issues)
    _check_fallbacks(models, sections["models"], sections["pools"], issues)
    _check_keys(data.get("auth"), sections["pools"], sections["models"], issues)
    issues = _without_echoes(issues, source)
    if issues:
        raise source.error(issues)
    raw = RawConfig.model_validate(data)
    return GatewayConfig(
        path=source.path,
        server=raw.server,
        providers=providers,
        models=_model_specs(models, providers),
        pools=pools,
        raw=raw,
    )


def _entries(data: dict[str, Any], key: str, issues: list[ConfigIssue]) -> dict[str, Any]:
    """A ``name: {...}`` section as a dict; anything else is reported and read as empty."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.append(ConfigIssue((key,), "Input should be a valid dictionary"))
        return {}
    return value


def _get(body: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


def _without_echoes(issues: list[ConfigIssue], source: Source) -> list[ConfigIssue]:
    """Drop what an unset environment variable caused around it (an empty URL, a missing key): the
    variable is the one mistake."""

    def echo(issue: ConfigIssue) -> bool:
        return any(issue.loc == loc[: len(issue.loc)] or loc == issue.loc[: len(loc)] for loc in source.unset)

    return [i for i in issues if i in source.issues or not echo(i)]


def _validate(cls: type[M], data: Any, loc: Loc, issues: list[ConfigIssue]) -> M | None:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            where = tuple(err["loc"])
            message = _message(err)
            if err["type"] == "extra_forbidden":
                message = _unknown_key(str(where[-1]), _fields_at(cls, where[:-1]))
            issues.append(ConfigIssue((*loc, *where), message))
        return None


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _unknown_key(key: str, fields: Iterable[str]) -> str:
    guess = closest(key, fields)
    return f"unknown key (did you mean '{guess}'?)" if guess is not None else "unknown key"


def _fields_at(cls: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``path`` (inside ``cls``) leads: the fields of the model found there."""
    current: Any = cls
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field_info = current.model_fields.get(part)
            if field_info is None:
                return []
            current = field_info.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        elif get_origin(current) is list and isinstance(part, int):
            current = get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _providers(entries: Mapping[str, Any], issues: list[ConfigIssue]) -> dict[str, ProviderConfig]:
    out: dict[str, ProviderConfig] = {}
    for name, body in entries.items():
        loc: Loc = ("providers", name)
        if not isinstance(body, dict):
            issues.append(ConfigIssue(loc, "Input should be a valid dictionary"))
            continue
        kind = body.get("type")
        cls = PROVIDER_CONFIG_TYPES.get(str(kind)) if kind is not None else None
        if cls is None:
            if kind is None:
                known = ", ".join(PROVIDER_CONFIG_TYPES)
                issues.append(ConfigIssue(loc, f"required key 'type' is missing (known: {known})"))
            else:
                issues.append(ConfigIssue((*loc, "type"), unknown("provider type", str(kind), PROVIDER_CONFIG_TYPES)))
            continue
        cfg = _validate(cls, body, loc, issues)
        if cfg is not None:
            out[name] = cfg
    return out


def _check_name(loc: Loc, name: Any, known: Mapping[str, Any], what: str, issues: list[ConfigIssue]) -> None:
    # Checked against every name written in the file, valid or not: an entry with its own error is
    # reported once, not again by everything that refers to it.
    if isinstance(name, str) and name not in known:
        issues.append(ConfigIssue(loc, unknown(what, name, known)))


def _model_specs(models: Mapping[str, ModelConfig], providers: Mapping[str, ProviderConfig]) -> dict[str, ModelSpec]:
    """Valid models (every provider name already checked) as what the runtime calls."""
    out: dict[str, ModelSpec] = {}
    for name, m in models.items():
        if m.provider is not None:
            provider = providers[m.provider]
            own = _spec(name, m.model or name, m.provider, m.price, m.timeouts or provider.timeouts)
            deployments: tuple[Deployment, ...] = (Deployment(f"{m.provider}/{own.upstream}", own),)
        else:
            deployments = _deployments(name, m, [(d, providers[d.provider]) for d in m.deployments])
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


def _check_fallbacks(
    models: Mapping[str, ModelConfig], written: Mapping[str, Any], pools: Mapping[str, Any], issues: list[ConfigIssue]
) -> None:
    """Fallbacks name models (not pools), and never lead back to where they started. ``written``: every
    model name in the file, valid or not (a model with its own error is not reported again here)."""
    for name, m in models.items():
        for i, fb in enumerate(m.fallbacks):
            loc: Loc = ("models", name, "fallbacks", i)
            if fb in pools:
                issues.append(ConfigIssue(loc, f"'{fb}' is a pool; a fallback must be a model"))
            elif fb not in written:
                issues.append(ConfigIssue(loc, unknown("model", fb, written)))
            elif fb in models:
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


def _check_keys(auth: Any, pools: Mapping[str, Any], models: Mapping[str, Any], issues: list[ConfigIssue]) -> None:
    keys = _get(auth, "keys")
    if not isinstance(keys, list):
        return
    seen: set[str] = set()
    for i, key in enumerate(keys):
        loc: Loc = ("auth", "keys", i)
        name = _get(key, "name")
        if isinstance(name, str):
            if name in seen:
                issues.append(ConfigIssue((*loc, "name"), f"duplicate key name '{name}'"))
            seen.add(name)
        for field_name, known, what in (("pools", pools, "pool"), ("models", models, "model")):
            names = _get(key, field_name)
            for j, ref in enumerate(names if isinstance(names, list) else []):
                if ref != "*":
                    _check_name((*loc, field_name, j), ref, known, what, issues)


def _check_pool_names(
    name: str, body: Any, models: Mapping[str, Any], pools: Mapping[str, Any], issues: list[ConfigIssue]
) -> None:
    """Every model and pool name a pool refers to, read from the raw entry so that a schema error
    elsewhere in the pool does not hide a misspelt member."""
    loc: Loc = ("pools", name)
    if name in models:
        issues.append(ConfigIssue(loc, f"'{name}' is already a model name; pools and models share one namespace"))

    def check_model(where: Loc, ref: Any, what: str) -> None:
        if isinstance(ref, str) and ref in pools:
            issues.append(ConfigIssue(where, f"'{ref}' is a pool; a {what} must be a model (no pool inside a pool)"))
        else:
            _check_name(where, ref, models, "model", issues)

    if _get(body, "mode") == "cascade":
        check_model((*loc, "first"), _get(body, "first"), "cascade's first model")
        check_model((*loc, "check", "agree_with"), _get(body, "check", "agree_with"), "check model")
        check_model((*loc, "check", "judge"), _get(body, "check", "judge"), "check judge")
        target = _get(body, "escalate")
        if isinstance(target, str):
            escalations = {n: p for n, p in pools.items() if _get(p, "mode") != "cascade"}
            if target in pools and target not in escalations:
                issues.append(ConfigIssue((*loc, "escalate"), f"'{target}' is a cascade; escalate to a pool"))
            else:
                _check_name((*loc, "escalate"), target, escalations, "pool", issues)
        return
    members = _get(body, "members")
    for i, member in enumerate(members if isinstance(members, list) else []):
        check_model((*loc, "members", i), member, "member")
    check_model((*loc, "judge", "model"), _get(body, "judge", "model"), "judge")
    check_model((*loc, "baseline", "model"), _get(body, "baseline", "model"), "baseline")
    check_model((*loc, "baseline", "compare_judge"), _get(body, "baseline", "compare_judge"), "comparison judge")


def _check_pool(name: str, pool: PoolConfig, issues: list[ConfigIssue]) -> None:
    """Rules between the fields of one valid pool."""
    loc: Loc = ("pools", name)
    if pool.mode == "cascade":
        _check_cascade(loc, pool, issues)
        return
    for key in ("first", "check", "escalate"):
        if getattr(pool, key) is not None:
            issues.append(ConfigIssue((*loc, key), "only meaningful with mode: cascade"))
    if not pool.members:
        issues.append(ConfigIssue((*loc, "members"), f"at least 1 member is needed (mode: {pool.mode})"))
    if pool.judge is None and (len(pool.members) > 1 or pool.mode == "debate"):
        issues.append(ConfigIssue(loc, "a judge is required when a pool has more than one member"))
    if pool.quorum is not None and pool.quorum > len(pool.members):
        issues.append(ConfigIssue((*loc, "quorum"), f"quorum {pool.quorum} exceeds the {len(pool.members)} members"))
    if pool.agreement is not None and pool.agreement.min > len(pool.members):
        issues.append(
            ConfigIssue(
                (*loc, "agreement", "min"),
                f"agreement min {pool.agreement.min} exceeds the {len(pool.members)} members",
            )
        )
    if pool.max_cost_usd is not None and pool.max_tokens_cap is None:
        issues.append(
            ConfigIssue((*loc, "max_cost_usd"), "needs max_tokens_cap: without it the worst case has no bound")
        )
    if pool.debate is not None and pool.mode != "debate":
        issues.append(ConfigIssue((*loc, "debate"), "only meaningful with mode: debate"))
    baseline = pool.baseline
    if baseline is not None and baseline.compare_judge is None and baseline.compare == "judge" and pool.judge is None:
        issues.append(
            ConfigIssue((*loc, "baseline", "compare"), "compare: judge needs the pool's judge or compare_judge")
        )


def _check_cascade(loc: Loc, pool: PoolConfig, issues: list[ConfigIssue]) -> None:
    """A cascade: a first model, a check, and a pool to escalate to (names are checked with the rest)."""
    for key in ("first", "check", "escalate"):
        if getattr(pool, key) is None:
            issues.append(ConfigIssue((*loc, key), "required key is missing (mode: cascade)"))
    for key in ("members", "judge", "agreement", "debate", "merge", "quorum", "grace_ms"):
        if getattr(pool, key) not in (None, []):
            issues.append(ConfigIssue((*loc, key), "not used by mode: cascade (the escalation pool has its own)"))
