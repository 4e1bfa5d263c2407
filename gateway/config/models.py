"""``models:``: where each model is served, its price, and how a call picks among its deployments."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from gateway.config.base import PositiveSeconds, Strict, Usd
from gateway.config.providers import Timeouts


class Price(Strict):
    """USD per 1M tokens."""

    input: Usd
    output: Usd
    #: prompt tokens read from the upstream's cache; defaults to ``input``
    cached_input: Usd | None = None
    #: prompt tokens written to the upstream's cache (Anthropic: 1.25x input for 5 minutes, 2x for an
    #: hour); defaults to ``input``
    cache_write_input: Usd | None = None

    @property
    def cached(self) -> Decimal:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write(self) -> Decimal:
        return self.input if self.cache_write_input is None else self.cache_write_input


class DeploymentConfig(Strict):
    """One place a model is served: a provider, the name it has there, and what is particular to it."""

    provider: str
    #: name sent upstream; defaults to the model's key
    model: str | None = None
    #: share of traffic under ``routing: weighted``
    weight: float = Field(1.0, gt=0)
    #: this deployment's own limits (e.g. one API key's quota): when reached it is skipped until the minute passes
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    #: defaults to the model's price
    price: Price | None = None
    timeouts: Timeouts | None = None


class OutlierDetection(Strict):
    """Envoy-style ejection of a deployment that keeps failing (5xx, connect errors, timeouts; never 4xx)."""

    consecutive_failures: int = Field(5, ge=1)
    #: an ejection lasts this long times the number of times the deployment was ejected, up to max_ejection_s
    base_ejection_s: PositiveSeconds = 30.0
    max_ejection_s: PositiveSeconds = 300.0
    #: at most this share of a model's deployments is ejected at once (at least one may always be)
    max_ejected_percent: float = Field(50.0, ge=0, le=100)
    #: a 429 without Retry-After takes the deployment out of rotation this long
    rate_limit_cooldown_s: float = Field(1.0, ge=0)


Routing = Literal["least-inflight", "weighted", "latency"]


class ModelConfig(Strict):
    #: where the model is served; or ``deployments`` for several places
    provider: str | None = None
    #: name sent upstream; defaults to the key under ``models:``
    model: str | None = None
    price: Price | None = None
    timeouts: Timeouts | None = None
    deployments: list[DeploymentConfig] = Field([], max_length=64)
    #: how a call picks among deployments: fewest calls in flight, weighted random, lowest recent latency (EWMA)
    routing: Routing = "least-inflight"
    outlier_detection: OutlierDetection = OutlierDetection()
    #: models tried in order when this one cannot answer (every deployment failed, ejected or rate limited)
    fallbacks: list[str] = []

    @model_validator(mode="after")
    def _one_place(self) -> ModelConfig:
        if (self.provider is None) == (not self.deployments):
            raise ValueError("give either provider or deployments")
        if self.deployments and self.model is not None:
            raise ValueError("with deployments, each deployment names its upstream model")
        return self
