"""Typed shape of the gateway's YAML. Every model rejects unknown keys.

Names here are a contract: operators' files, the docs and the dashboards rely on them.
Cross-references between sections (a model's provider, a pool's members) are checked in ``loader``.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from fusion_modes.agreement import ComparisonName
from fusion_modes.base import FinalMode, ModeName
from fusion_modes.criteria import CRITERIA_PRESETS, is_preset_name
from gateway.config.presets import PRESETS
from gateway.config.suggest import unknown

PositiveSeconds = Annotated[float, Field(gt=0)]
Usd = Annotated[Decimal, Field(ge=0)]


def http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, got '{v}'")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- server


class RetryBudget(Strict):
    """Retries and fallbacks allowed, as a share of calls over a sliding window (with a floor), so that
    an upstream that is down is not hammered by retries on top of the traffic it already gets."""

    #: retries allowed per call started in the window (linkerd's retryRatio)
    ratio: float = Field(0.2, ge=0)
    #: retries always allowed, however little traffic there is (linkerd's minRetriesPerSecond)
    min_retries_per_s: float = Field(10.0, ge=0)
    window_s: PositiveSeconds = 10.0


#: request headers a browser page may send by default: the client key (either API), JSON, the request id,
#: and the headers the official SDKs add (``openai-organization``, ``anthropic-version``, ``x-stainless-os`` ...)
CORS_ALLOW_HEADERS = (
    "authorization", "content-type", "x-api-key", "x-request-id", "anthropic-*", "openai-*", "x-stainless-*",
)  # fmt: skip
#: response headers a page's script may read by default: what the gateway says about an answer
CORS_EXPOSE_HEADERS = (
    "x-request-id", "x-fusion-cost-usd", "x-fusion-cache", "x-fusion-answered-by", "x-fusion-fallback-reason",
    "retry-after",
)  # fmt: skip
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'+.^_`|~-]+")


class CorsConfig(Strict):
    """Browsers on other origins (``server.cors``): off while ``allow_origins`` is empty. Read at start-up."""

    #: origins as a browser sends them (``https://app.example.com``, ``http://localhost:5173``), or ``*``
    allow_origins: tuple[str, ...] = ()
    #: request header names; ``prefix-*`` allows every name starting with ``prefix-``
    allow_headers: tuple[str, ...] = CORS_ALLOW_HEADERS
    expose_headers: tuple[str, ...] = CORS_EXPOSE_HEADERS
    #: how long a browser may reuse a preflight's answer (browsers cap it: Chromium at 7200)
    max_age_s: int = Field(600, ge=0)
    #: send ``access-control-allow-credentials`` (cookies or HTTP authentication added in front of the
    #: gateway); client keys in headers do not need it
    allow_credentials: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in v and len(v) > 1:
            raise ValueError("'*' allows every origin: list it alone")
        return tuple(o if o == "*" else _origin(o) for o in v)

    @field_validator("allow_headers", "expose_headers")
    @classmethod
    def _header_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(h.strip().lower() for h in v)
        for name in names:
            if not _HEADER_NAME.fullmatch(name.removesuffix("*")) and name != "*":
                raise ValueError(f"'{name}' is not a header name (a trailing '*' matches a prefix)")
        return names

    @model_validator(mode="after")
    def _credentials(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials needs the origins listed: browsers refuse credentials for '*'")
        return self


def _origin(text: str) -> str:
    """An origin in the form browsers send it: lower case, no default port, no trailing slash."""
    parts = urlsplit(text.strip())
    if not parts.scheme or not parts.hostname or "*" in text:
        raise ValueError(f"'{text}' is not an origin: write scheme://host[:port], or '*' alone for any")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"'{text}' is not an origin: an origin has no path, query or user")
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


class ServerLimits(Strict):
    """The front door (see :mod:`gateway.service.front_door`)."""

    #: open client connections at most; at the limit the quietest idle one makes room for a new one
    max_connections: int = Field(1000, ge=1)
    #: request line and headers must arrive within this long: 408 otherwise
    header_read_timeout_s: PositiveSeconds = 10.0
    #: the body must arrive within this long of the headers: 408 otherwise
    body_read_timeout_s: PositiveSeconds = 60.0
    #: a kept-alive connection waiting for its next request is closed after this long (whole seconds)
    idle_timeout_s: int = Field(5, ge=1)
    #: request line plus headers at most: 431 otherwise
    max_header_bytes: int = Field(32 * 1024, ge=1024)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_messages: int = Field(2048, gt=0)
    #: SSE comment lines sent while a fused stream has nothing else to say
    keepalive_s: PositiveSeconds = 2.5
    #: on SIGTERM, how long in-flight requests may finish before open streams are ended
    shutdown_grace_s: float = Field(10.0, ge=0)
    #: watch the config file and reload it when it changes (SIGHUP and POST /admin/reload always work)
    watch_config: bool = True
    watch_interval_s: PositiveSeconds = 1.0
    #: a changed file is read only once its size, mtime and inode have held this long (no half-written file)
    watch_settle_s: PositiveSeconds = 1.0
    #: background work (baseline samples and their comparisons) running at once; beyond it, samples are skipped
    background_max_inflight: int = Field(64, ge=0)
    retry_budget: RetryBudget = RetryBudget()
    limits: ServerLimits = ServerLimits()
    cors: CorsConfig = CorsConfig()


# --------------------------------------------------------------------------- providers


class Timeouts(Strict):
    connect_s: PositiveSeconds = 5.0
    #: headers must arrive within this long after the request was sent
    first_byte_s: PositiveSeconds = 120.0
    #: wall clock for the whole call, body included: a drip-feeding upstream cannot outlive it
    total_s: PositiveSeconds = 600.0


class RetryPolicy(Strict):
    max_retries: int = Field(2, ge=0, le=10)
    backoff_base_s: float = Field(0.25, ge=0)
    backoff_max_s: float = Field(4.0, ge=0)


class ProviderBase(Strict):
    #: the adapter that serves this ``type:``, as "module:Class" (uvicorn's way): imported only when a
    #: provider of this type is configured, so the config layer never imports the providers
    adapter: ClassVar[str]

    #: each subclass narrows this to its own literal: the type's name, declared once
    type: str
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()


_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


def link_local_reason(url: str) -> str | None:
    """Why ``url`` points at a link-local or cloud-metadata address, or None if it does not."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _METADATA_HOSTS:
        return f"host '{host}' is a cloud metadata service"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata services live there)"
    return None


class HTTPProviderConfig(ProviderBase):
    """What every provider that calls an HTTP upstream shares: where, with which key, how many connections."""

    base_url: str
    api_key: SecretStr | None = None
    headers: dict[str, str] = {}
    #: 0 means no limit: the gateway lives at high in-flight concurrency
    max_connections: int = Field(0, ge=0)
    allow_link_local: bool = False
    #: the largest answer accepted, counted after decompression (a gzip bomb stops here, not in memory)
    max_response_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    #: the largest single event (or line) of a streamed answer
    max_event_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v).rstrip("/")

    @model_validator(mode="after")
    def _no_link_local(self) -> HTTPProviderConfig:
        reason = link_local_reason(self.base_url)
        if reason and not self.allow_link_local:
            raise ValueError(f"base_url refused: {reason}; set allow_link_local: true if you mean it")
        return self

    def has_credentials(self, *auth_headers: str) -> bool:
        """A key is configured, or one of ``auth_headers`` carries one."""
        if self.api_key is not None and self.api_key.get_secret_value():
            return True
        given = {k.lower() for k, v in self.headers.items() if v}
        return any(h in given for h in auth_headers)


# A stand-in base_url while an unknown preset is reported: without it the report would also say that
# base_url is missing, which is not the mistake.
_UNKNOWN_PRESET_URL = "http://unknown-preset.invalid"


class OpenAIProviderConfig(HTTPProviderConfig):
    """Any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp, OpenRouter, ...

    ``preset`` fills in ``base_url`` (and says whether a key is needed) for well-known services; see
    :mod:`gateway.config.presets`. Every field written in the config overrides the preset.
    """

    type: Literal["openai"]
    adapter: ClassVar[str] = "gateway.providers.openai_compat:OpenAIProvider"
    preset: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None or "base_url" in data:
            return data
        preset = PRESETS.get(str(data["preset"]))
        return {**data, "base_url": preset.base_url if preset is not None else _UNKNOWN_PRESET_URL}

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise ValueError(unknown("preset", v, PRESETS))
        return v

    @model_validator(mode="after")
    def _preset_key(self) -> OpenAIProviderConfig:
        preset = PRESETS.get(self.preset) if self.preset is not None else None
        if preset is not None and preset.needs_key and not self.has_credentials("authorization"):
            raise ValueError(f"preset '{self.preset}' needs an api_key (sent as 'Authorization: Bearer <key>')")
        return self


ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


class AnthropicProviderConfig(HTTPProviderConfig):
    """Anthropic's Messages API, translated to and from OpenAI Chat Completions (``x-api-key`` auth)."""

    type: Literal["anthropic"]
    adapter: ClassVar[str] = "gateway.providers.anthropic:AnthropicProvider"
    base_url: str = ANTHROPIC_BASE_URL
    anthropic_version: str = "2023-06-01"
    #: Anthropic requires max_tokens; this is sent when the caller gives neither max_tokens nor max_completion_tokens
    max_tokens: int = Field(4096, ge=1)
    #: native Messages fields added to every request (e.g. thinking, top_k); the translated request wins on conflict
    extra_body: dict[str, Any] = {}

    @model_validator(mode="after")
    def _key(self) -> AnthropicProviderConfig:
        if self.base_url == ANTHROPIC_BASE_URL and not self.has_credentials("x-api-key", "authorization"):
            raise ValueError("api.anthropic.com needs an api_key (sent as 'x-api-key')")
        return self


class GeminiProviderConfig(HTTPProviderConfig):
    """Google's Gemini API (generateContent), translated to and from OpenAI Chat Completions (``x-goog-api-key``)."""

    type: Literal["gemini"]
    adapter: ClassVar[str] = "gateway.providers.gemini:GeminiProvider"
    base_url: str = GEMINI_BASE_URL
    #: native GenerateContentRequest fields added to every request (e.g. safetySettings,
    #: generationConfig.thinkingConfig); merged key by key, the translated request wins on conflict
    extra_body: dict[str, Any] = {}

    @model_validator(mode="after")
    def _key(self) -> GeminiProviderConfig:
        if self.base_url == GEMINI_BASE_URL and not self.has_credentials("x-goog-api-key", "authorization"):
            raise ValueError("generativelanguage.googleapis.com needs an api_key (sent as 'x-goog-api-key')")
        return self


class FailureInjection(Strict):
    #: share of calls answered with ``status`` instead of an answer
    rate: float = Field(0.0, ge=0, le=1)
    status: int = Field(503, ge=400, le=599)
    #: share of calls that never answer (the caller's timeout decides)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    #: share of streams cut mid-way without finish_reason or [DONE]
    cut_rate: float = Field(0.0, ge=0, le=1)


class HeavyTail(Strict):
    probability: float = Field(0.0, ge=0, le=1)
    multiplier: float = Field(5.0, ge=1)


class SimulatorProfile(Strict):
    """How one simulated model behaves."""

    ttft_ms: float = Field(120.0, ge=0)
    tokens_per_s: float = Field(80.0, gt=0)
    jitter_ms: float = Field(0.0, ge=0)
    tail: HeavyTail = HeavyTail()
    #: probability of a correct answer to an arithmetic question
    accuracy: float = Field(0.7, ge=0, le=1)
    #: length of the deterministic text answer to anything that is not arithmetic
    answer_tokens: int = Field(48, ge=1, le=4096)
    failures: FailureInjection = FailureInjection()
    #: False: streams carry no usage chunk (an upstream that omits it)
    stream_usage: bool = True


class SimulatorProviderConfig(ProviderBase):
    """Offline, deterministic OpenAI-compatible models (no network, no key)."""

    type: Literal["simulator"]
    adapter: ClassVar[str] = "gateway.providers.simulator:SimulatorProvider"
    seed: int = 0
    #: upstream model name -> profile; other names get the default profile
    profiles: dict[str, SimulatorProfile] = {}

    def profile(self, model: str) -> SimulatorProfile:
        return self.profiles.get(model) or SimulatorProfile()


#: Every provider ``type:``, the one registry: adding a type is a config class here (its ``type``
#: literal and its ``adapter``) and the adapter it names.
_PROVIDER_CLASSES: tuple[type[ProviderBase], ...] = (
    OpenAIProviderConfig,
    AnthropicProviderConfig,
    GeminiProviderConfig,
    SimulatorProviderConfig,
)
PROVIDER_CONFIG_TYPES: dict[str, type[ProviderBase]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls for cls in _PROVIDER_CLASSES
}
ProviderConfig = ProviderBase


# --------------------------------------------------------------------------- models


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


# --------------------------------------------------------------------------- pools


def unknown_criteria_preset(name: str) -> str:
    return unknown("criteria preset", name, CRITERIA_PRESETS) + "; criteria of your own are a sentence"


class JudgeConfig(Strict):
    model: str
    #: a preset's name (see :mod:`fusion_modes.criteria`) or a sentence of the operator's own
    criteria: str | None = None
    #: best-of: also judge with the candidates in reversed order
    swap: bool = False
    timeout_s: PositiveSeconds = 30.0
    #: candidates longer than this are cut (with a marker) before the judge sees them
    max_candidate_chars: int = Field(16_000, ge=100)
    #: how the verdict is asked for: a JSON schema (OpenAI, vLLM, Ollama ...), plain JSON mode, or the prompt only
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    #: extra request fields for judge calls, e.g. {temperature: 0}
    params: dict[str, Any] = {}

    @field_validator("criteria")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and is_preset_name(v) and v not in CRITERIA_PRESETS:
            raise ValueError(unknown_criteria_preset(v))
        return v


class DebateConfig(Strict):
    rounds: int = Field(2, ge=0, le=6)
    final: FinalMode = "best-of"


class MergeConfig(Strict):
    """How a pool merges (mode: merge, debate's ``final: merge``, or ``fusion.mode: merge`` per request)."""

    #: the judge first writes a structured comparison of the panel, then the answer from it (one more call)
    analysis: bool = False


class BaselineConfig(Strict):
    model: str
    sample_rate: float = Field(0.1, ge=0, le=1)
    compare: Literal["judge", "none"] = "judge"
    compare_judge: str | None = None


Compare = ComparisonName


class AgreementConfig(Strict):
    """Consensus: once ``min`` members give equivalent answers, answer with it, skip the judge and cancel
    the members still running. ``compare`` names the equivalence (see :mod:`fusion_modes.agreement`)."""

    compare: Compare = "normalized"
    min: int = Field(2, ge=2)


class CascadeCheck(Strict):
    """When a cascade accepts its first model's answer. Every check given must pass; cheapest first."""

    #: the answer must validate against the request's ``response_format`` (a JSON schema, or JSON at all)
    response_format: bool = False
    #: the answer must match this pattern (``re.search``)
    regex: str | None = None
    #: a second model (or the first one again, for a second sample) must give an equivalent answer
    agree_with: str | None = None
    compare: Compare = "normalized"
    #: a judge rates the answer; below ``min_confidence`` it escalates
    judge: str | None = None
    min_confidence: float = Field(0.8, ge=0, le=1)

    @field_validator("regex")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _something(self) -> CascadeCheck:
        if not (self.response_format or self.regex or self.agree_with or self.judge):
            raise ValueError("give at least one of response_format, regex, agree_with, judge")
        if self.compare == "judge" and self.agree_with and not self.judge:
            raise ValueError("compare: judge needs a judge")
        return self


#: a pool's mode: a fusion mode, or a cascade (which routes between a model and a pool and fuses nothing)
Mode = ModeName | Literal["cascade"]


class PoolConfig(Strict):
    mode: Mode
    #: every mode but cascade: 1 to 8 model names
    members: list[str] = Field(default_factory=list, max_length=8)
    judge: JudgeConfig | None = None
    fallback: Literal["first-success", "error"] = "first-success"
    timeout_s: PositiveSeconds = 30.0
    deadline_s: PositiveSeconds = 60.0
    #: successful members needed before judging; default: all members
    quorum: int | None = Field(None, ge=1)
    #: a quorum miss fails the request instead of judging what did answer
    require_quorum: bool = False
    #: once quorum is met, wait this long for the rest, then cancel them; default: until timeout_s
    grace_ms: float | None = Field(None, ge=0)
    debate: DebateConfig | None = None
    merge: MergeConfig | None = None
    agreement: AgreementConfig | None = None
    #: cascade: this model answers first; ``check`` decides whether its answer stands or ``escalate`` (a pool) runs
    first: str | None = None
    check: CascadeCheck | None = None
    escalate: str | None = None
    baseline: BaselineConfig | None = None
    max_tokens_cap: int | None = Field(None, ge=1)
    max_tokens_policy: Literal["clamp", "reject"] = "clamp"
    max_cost_usd: Usd | None = None

    @property
    def effective_quorum(self) -> int:
        return self.quorum if self.quorum is not None else len(self.members)


# --------------------------------------------------------------------------- operators


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
        return (
            f"unsupported ledger URL '{url}' (use sqlite:///PATH, postgresql://USER@HOST:PORT/DB, or none)"
        )
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
