"""The gateway's one exception tree.

Every error a caller can see is a :class:`GatewayError`; it knows its HTTP status, its OpenAI error
``type`` and ``code``, and renders the OpenAI envelope ``{"error": {"message", "type", "param", "code"}}``.
Lower-level errors (the upstream client's, orjson, pydantic, YAML) are translated at the boundary where they happen,
with ``raise ... from exc``, so nothing else in the code base needs to know about them.

    GatewayError                         500 api_error
    ├── ConfigError                      (load time: never reaches a caller)
    ├── LedgerSchemaError                (start time: the ledger's schema is not one this gateway can use)
    ├── InvalidRequest                   400 invalid_request_error
    │   └── PayloadTooLarge              413
    ├── AuthenticationFailed             401 authentication_error
    ├── ModelNotFound                    404 invalid_request_error / model_not_found (also: a name the key
    │                                        may not use, so that a key cannot tell which names exist)
    ├── RequestNotFound                  404 invalid_request_error / request_not_found
    ├── RateLimited                      429 rate_limit_error (+ Retry-After)
    │   └── QuotaExceeded                429 insufficient_quota
    ├── ServiceUnavailable               503 (shutting down, not ready; + Retry-After)
    └── UpstreamError                    502 upstream call failed
        ├── UpstreamStatusError          mapped from the upstream's status
        ├── UpstreamTimeout              504
        ├── UpstreamConnectError         502
        ├── UpstreamProtocolError        502 (bad JSON, truncated stream)
        │   └── UpstreamTooLarge         502 (answer or event over the provider's caps)
        ├── PoolFailed                   502/503/400: no member of a pool answered
        └── JudgeUnavailable             502: the judge failed and the pool's fallback is 'error'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

#: seconds a 503 asks the caller to wait when nothing better is known (an overload is usually short)
RETRY_AFTER_503 = "1"


class GatewayError(Exception):
    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code

    @property
    def http_status(self) -> int:
        return self.status

    def headers(self) -> dict[str, str]:
        return {}

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ConfigError(GatewayError):
    """A config file is invalid. The message names file, line and key path."""

    default_code = "config_error"


class LedgerSchemaError(GatewayError):
    """The ledger database's schema is newer than this gateway knows, or older and not to be migrated."""

    default_code = "ledger_schema"


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    default_code = "request_too_large"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class ModelNotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class RequestNotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "request_not_found"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        # Retry-After takes whole seconds; round up so a client never retries too early.
        return {"retry-after": str(max(1, int(-(-self.retry_after_s // 1))))}


class QuotaExceeded(RateLimited):
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class ServiceUnavailable(GatewayError):
    status = 503
    error_type = "api_error"
    default_code = "service_unavailable"

    def headers(self) -> dict[str, str]:
        return {"retry-after": RETRY_AFTER_503}


class UpstreamError(GatewayError):
    """An upstream call failed. Messages never carry upstream bodies or credentials."""

    status = 502
    error_type = "api_error"
    default_code = "upstream_error"
    #: short, bounded label for metrics and fusion metadata (``error_type``)
    kind: ClassVar[str] = "error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after_s: float | None = None,
        status: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, code=code, param=param)
        self.retry_after_s = retry_after_s
        self._status = status

    @property
    def http_status(self) -> int:
        return self._status if self._status is not None else self.status

    def headers(self) -> dict[str, str]:
        status = self.http_status
        if status in (429, 503) and self.retry_after_s is not None:
            return {"retry-after": str(max(1, int(-(-self.retry_after_s // 1))))}
        if status == 503:
            return {"retry-after": RETRY_AFTER_503}
        return {}


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status. ``upstream_status`` keeps the original."""

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        retry_after_s: float | None = None,
    ) -> None:
        status, error_type, code = _map_upstream_status(upstream_status)
        super().__init__(message, code=code, retry_after_s=retry_after_s, status=status)
        self.upstream_status = upstream_status
        self.mapped_type = error_type
        self.retryable = upstream_status == 429 or upstream_status >= 500

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"http_{self.upstream_status}"

    def envelope(self) -> dict[str, Any]:
        env = super().envelope()
        env["error"]["type"] = self.mapped_type
        return env


class UpstreamTimeout(UpstreamError):
    status = 504
    default_code = "upstream_timeout"
    kind = "timeout"
    retryable = False


class UpstreamConnectError(UpstreamError):
    default_code = "upstream_unreachable"
    kind = "connect_error"
    retryable = True


class UpstreamProtocolError(UpstreamError):
    default_code = "upstream_protocol_error"
    kind = "protocol_error"


class UpstreamTooLarge(UpstreamProtocolError):
    """The upstream's answer (decompressed), or one of its events, is larger than the provider's cap."""

    default_code = "upstream_response_too_large"
    kind = "response_too_large"


class PoolFailed(UpstreamError):
    """No member of a pool produced an answer."""

    default_code = "pool_failed"
    kind = "pool_failed"

    def __init__(self, pool: str, failures: Sequence[UpstreamError | None]) -> None:
        kinds: dict[str, int] = {}
        for f in failures:
            k = f.kind if f is not None else "cancelled"
            kinds[k] = kinds.get(k, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        status = _pool_status(failures)
        message = f"pool '{pool}': all {len(failures)} members failed ({summary})"
        if status == 400:
            # Every member refused the request itself: say why (these messages are already scrubbed).
            first = next(f for f in failures if f is not None)
            message += f"; first refusal: {first.message}"
        super().__init__(message, status=status, param=next((f.param for f in failures if f and f.param), None))
        self.failure_kinds = kinds

    def envelope(self) -> dict[str, Any]:
        env = super().envelope()
        if self.http_status == 400:
            env["error"]["type"] = "invalid_request_error"
        return env


class JudgeUnavailable(UpstreamError):
    default_code = "judge_failed"
    kind = "judge_failed"


def _pool_status(failures: Sequence[UpstreamError | None]) -> int:
    real = [f for f in failures if f is not None]
    if real and all(isinstance(f, UpstreamStatusError) and f.http_status == 400 for f in real):
        return 400  # every member rejected the request itself: the caller's fault, not ours
    if real and all(f.http_status == 429 for f in real):
        return 429
    if real and all(isinstance(f, UpstreamTimeout) for f in real):
        return 504
    if real and all(f.http_status == 503 for f in real):
        return 503
    return 502


def _map_upstream_status(upstream: int) -> tuple[int, str, str]:
    """Upstream status -> (status for our caller, OpenAI error type, code).

    An upstream 401/403 means the *operator's* key is wrong: the caller gets 502, never 401,
    so an app does not think its own key was rejected.
    """
    if upstream in (400, 413, 422):
        return 400, "invalid_request_error", "upstream_rejected_request"
    if upstream in (401, 403):
        return 502, "api_error", "upstream_auth_failed"
    if upstream == 404:
        return 502, "api_error", "upstream_not_found"
    if upstream == 429:
        return 429, "rate_limit_error", "upstream_rate_limited"
    if upstream in (503, 529):
        return 503, "api_error", "upstream_overloaded"
    if upstream == 504:
        return 504, "api_error", "upstream_timeout"
    return 502, "api_error", "upstream_error"


def envelope(message: str, error_type: str, *, param: str | None = None, code: str | None = None) -> Mapping[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
