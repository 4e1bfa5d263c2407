"""Typed shape of the gateway's YAML: the root, and the operators' sections. Every model rejects unknown keys.

Names here are a contract: operators' files, the docs and the dashboards rely on them. The larger
sections have their own modules (``server``, ``providers``, ``models``, ``pools``); cross-references
between sections (a model's provider, a pool's members) are checked in ``loader``.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.base import PositiveSeconds, Strict, Usd, http_url
from gateway.config.models import ModelConfig
from gateway.config.pools import PoolConfig
from gateway.config.server import ServerConfig


class KeyConfig(Strict):
    """One client API key: what it may call and how much."""

    name: str = Field(min_length=1)
    key: SecretStr | None = None
    #: the key's SHA-256 in hex, so the plain key never has to sit in the file
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    #: pools this key may call; ["*"] for all
    pools: list[str] = []
    #: models this key may call directly; ["*"] for all
    models: list[str] = []
    rpm: int | None = Field(None, ge=1)
    budget_usd_per_day: Usd | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of key or key_sha256")
        return self


class AuthConfig(Strict):
    admin_key: SecretStr | None = None
    keys: list[KeyConfig] = []


class StateConfig(Strict):
    """Where rate-limit counters and budgets live: this process, or Redis (shared by replicas)."""

    redis_url: str | None = None
    key_prefix: str = "fusion:"


LEDGER_SCHEMES = ("sqlite", "postgresql")


def ledger_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a ledger database, or None if it can."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme not in LEDGER_SCHEMES:
        return f"unsupported ledger URL '{url}' (use sqlite:///PATH, postgresql://USER@HOST:PORT/DB, or none)"
    if scheme == "sqlite" and not parts.path.lstrip("/"):
        return f"ledger URL '{url}' names no file (sqlite:///relative/path or sqlite:////absolute/path)"
    if scheme == "postgresql" and (not parts.hostname or not parts.path.lstrip("/")):
        return f"ledger URL '{url}' needs a host and a database (postgresql://USER@HOST:PORT/DB)"
    return None


class LedgerConfig(Strict):
    """Where every finished request is remembered (``ledger:``; a URL alone is shorthand for ``url``)."""

    #: sqlite:///PATH, postgresql://..., or none; unset: an SQLite file in the data directory
    url: str | None = None
    #: keep prompt and answer text (needed by ``fusion-gateway export``); off: only sizes, outcomes, costs
    content: bool = False
    #: records older than this many days are pruned in the background; unset: kept forever
    retention_days: int | None = Field(None, ge=1)
    #: records held in memory while the database is slow or down; beyond it they are dropped and counted
    queue_max: int = Field(100_000, ge=1)
    #: records per write, and the write interval: whichever comes first
    batch_size: int = Field(1000, ge=1)
    flush_interval_s: PositiveSeconds = 1.0
    #: bring an older schema up to date at start (off: only ``fusion-gateway db upgrade`` does)
    migrate: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"url": data}
        if data is None:
            return {"url": "none"}
        return data

    @field_validator("url")
    @classmethod
    def _known_url(cls, v: str | None) -> str | None:
        if v is None or v == "none":
            return v
        problem = ledger_url_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @property
    def enabled(self) -> bool:
        return self.url != "none"


class CacheConfig(Strict):
    """Exact-match cache of answers. In this process by default; in Redis (``redis_url``) for a fleet."""

    enabled: bool = False
    ttl_s: PositiveSeconds = 300.0
    #: in memory: entries kept (least recently used go first); in Redis, size its maxmemory instead
    max_entries: int = Field(10_000, ge=1)
    #: answers larger than this are not cached
    max_entry_bytes: int = Field(1024 * 1024, ge=1)
    redis_url: str | None = None
    key_prefix: str = "fusion:cache:"
    #: key: entries are the caller's key's own (tenants never see each other's answers); shared: one for all
    scope: Literal["key", "shared"] = "key"
    #: also cache requests asking for sampling (temperature > 0): repeats then get the same answer
    sampled: bool = False


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: log prompts and answers (off: only sizes, outcomes, costs)
    content: bool = False


class TracingConfig(Strict):
    """OpenTelemetry traces, exported over OTLP/HTTP (protobuf). Absent: no tracing, no cost."""

    #: the collector's OTLP/HTTP address; ``/v1/traces`` is added when the URL has no path
    otlp_endpoint: str
    #: share of new traces kept (a caller's ``traceparent`` decides for its own traces)
    sample_ratio: float = Field(1.0, ge=0, le=1)
    #: the ``service.name`` resource attribute
    service_name: str = Field("fusion-gateway", min_length=1)

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        return v.rstrip("/") + "/v1/traces" if urlsplit(http_url(v)).path in ("", "/") else v


# --------------------------------------------------------------------------- root


class RawConfig(Strict):
    """Top level, with providers kept raw: they are validated per ``type`` through the registry."""

    server: ServerConfig = ServerConfig()
    providers: dict[str, dict[str, object]] = {}
    models: dict[str, ModelConfig] = {}
    pools: dict[str, PoolConfig] = {}
    auth: AuthConfig = AuthConfig()
    state: StateConfig = StateConfig()
    cache: CacheConfig = CacheConfig()
    logging: LoggingConfig = LoggingConfig()
    ledger: LedgerConfig = LedgerConfig()
    tracing: TracingConfig | None = None
