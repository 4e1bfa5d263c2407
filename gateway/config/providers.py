"""``providers:``: one config class per ``type:``, and the registry of them.

Each class names the adapter that serves its type (``adapter``, "module:Class"), imported only when a
provider of that type is configured: the config layer never imports the providers.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.config.base import PositiveSeconds, Strict, http_url
from gateway.config.presets import PRESETS
from gateway.config.suggest import unknown


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

    def adapter_for(self) -> str:
        """The adapter that serves this provider: its type's, unless a setting of the type picks another."""
        return self.adapter


#: an HTTP header name (RFC 9110 token)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
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

    #: the vendor's own endpoint, which answers nothing without a key, and the header the key goes in
    #: (None: the endpoint may be keyless, as a local vLLM is)
    official: ClassVar[tuple[str, str] | None] = None

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

    @field_validator("api_key")
    @classmethod
    def _one_line_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and (any(c in v.get_secret_value() for c in "\r\n\0") or not v.get_secret_value().isascii()):
            raise ValueError("api_key must be one line of ASCII (a key read from a file often ends in a line break)")
        return v

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if any(c in value for c in "\r\n\0") or not value.isascii():
                raise ValueError(f"header {name!r}: the value must be one line of ASCII (no CR, LF or NUL)")
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                raise ValueError(f"header {name!r} is set by the gateway for each request and cannot be configured")
        return v

    @model_validator(mode="after")
    def _official_needs_key(self) -> HTTPProviderConfig:
        if self.official is not None:
            url, header = self.official
            if self.base_url == url and not self.has_credentials(header, "authorization"):
                raise ValueError(f"{urlsplit(url).hostname} needs an api_key (sent as '{header}')")
        return self

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


#: The wire APIs an OpenAI-compatible upstream may be called over (``api:``), each with the adapter that
#: speaks it; the first is the default.
OPENAI_APIS: dict[str, str] = {
    "chat_completions": "gateway.providers.openai_compat:OpenAIProvider",
    "responses": "gateway.providers.openai_responses:OpenAIResponsesProvider",
}
OpenAIAPI = Literal["chat_completions", "responses"]


class OpenAIProviderConfig(HTTPProviderConfig):
    """Any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp, OpenRouter, ...

    ``preset`` fills in ``base_url`` (and says whether a key is needed) for well-known services; see
    :mod:`gateway.config.presets`. Every field written in the config overrides the preset.
    ``api`` says which wire API the upstream is called over: ``chat_completions`` (``POST
    {base_url}/chat/completions``, the default) or ``responses`` (``POST {base_url}/responses``).
    """

    type: Literal["openai"]
    adapter: ClassVar[str] = OPENAI_APIS["chat_completions"]
    preset: str | None = None
    api: OpenAIAPI = "chat_completions"

    @field_validator("api", mode="before")
    @classmethod
    def _known_api(cls, v: Any) -> Any:
        if v not in OPENAI_APIS:
            raise ValueError(unknown("api", str(v), OPENAI_APIS))
        return v

    def adapter_for(self) -> str:
        return OPENAI_APIS[self.api]

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
    official = (ANTHROPIC_BASE_URL, "x-api-key")
    anthropic_version: str = "2023-06-01"
    #: Anthropic requires max_tokens; this is sent when the caller gives neither max_tokens nor max_completion_tokens
    max_tokens: int = Field(4096, ge=1)
    #: native Messages fields added to every request (e.g. thinking, top_k); the translated request wins on conflict
    extra_body: dict[str, Any] = {}


class GeminiProviderConfig(HTTPProviderConfig):
    """Google's Gemini API (generateContent), translated to and from OpenAI Chat Completions (``x-goog-api-key``)."""

    type: Literal["gemini"]
    adapter: ClassVar[str] = "gateway.providers.gemini:GeminiProvider"
    base_url: str = GEMINI_BASE_URL
    official = (GEMINI_BASE_URL, "x-goog-api-key")
    #: native GenerateContentRequest fields added to every request (e.g. safetySettings,
    #: generationConfig.thinkingConfig); merged key by key, the translated request wins on conflict
    extra_body: dict[str, Any] = {}


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
