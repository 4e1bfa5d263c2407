"""``server:``: where the gateway listens, its front door's limits, browsers on other origins, retries."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.config.base import PositiveSeconds, Strict


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
