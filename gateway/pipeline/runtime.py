"""The live configuration: one immutable :class:`Runtime` per loaded config.

A request takes the current runtime when it starts and keeps it to the end, so a reload never changes
a request half-way. Providers whose settings did not change are carried over to the next runtime with
their connection pools.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.books.metrics import Metrics
from gateway.books.traces import Tracing
from gateway.config.loader import GatewayConfig, ModelSpec
from gateway.config.pools import PoolConfig
from gateway.pipeline.auth import KeyRing, no_such_model
from gateway.pipeline.balancer import Balancer, RetryBudget
from gateway.pipeline.upstream import UpstreamCaller
from gateway.providers import Provider, create_provider


@dataclass(frozen=True)
class PoolTarget:
    name: str
    pool: PoolConfig


@dataclass(frozen=True)
class Runtime:
    config: GatewayConfig
    providers: Mapping[str, Provider]
    caller: UpstreamCaller
    keys: KeyRing
    #: (model, deployment key or None) -> provider name: the ledger says where each call went
    providers_of: Mapping[tuple[str, str | None], str] = field(default_factory=dict)

    def resolve(self, name: str) -> ModelSpec | PoolTarget:
        spec = self.config.models.get(name)
        if spec is not None:
            return spec
        pool = self.config.pools.get(name)
        if pool is not None:
            return PoolTarget(name, pool)
        raise no_such_model(name)


def build_runtime(
    config: GatewayConfig, metrics: Metrics, previous: Runtime | None = None, tracing: Tracing | None = None
) -> Runtime:
    """A runtime for ``config``, reusing ``previous``'s providers whose config is unchanged."""
    providers: dict[str, Provider] = {}
    for name, pcfg in config.providers.items():
        old = previous.providers.get(name) if previous is not None else None
        providers[name] = old if old is not None and old.config == pcfg else create_provider(name, pcfg)
    # Deployment health and the retry budget outlive a reload: an ejected endpoint stays ejected.
    balancer = previous.caller.balancer if previous is not None else Balancer(metrics)
    budget_config = config.server.retry_budget
    old_budget = previous.caller.budget if previous is not None else None
    budget = old_budget if old_budget is not None and old_budget.config == budget_config else RetryBudget(budget_config)
    caller = UpstreamCaller(
        providers, metrics, models=config.models, balancer=balancer, budget=budget, tracing=tracing
    )
    return Runtime(
        config=config,
        providers=providers,
        caller=caller,
        keys=KeyRing(config.auth),
        providers_of=_providers_of(config),
    )


def _providers_of(config: GatewayConfig) -> dict[tuple[str, str | None], str]:
    out: dict[tuple[str, str | None], str] = {}
    for name, spec in config.models.items():
        out[(name, None)] = spec.provider  # called directly: no deployment is recorded
        for dep in spec.deployments:
            out[(name, dep.key)] = dep.spec.provider
    return out


def retired_providers(old: Runtime, new: Runtime) -> list[Provider]:
    """Providers of ``old`` that ``new`` does not use (to close once no request needs them)."""
    kept = {id(p) for p in new.providers.values()}
    return [p for p in old.providers.values() if id(p) not in kept]
