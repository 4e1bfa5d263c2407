"""Client keys: who is calling, and what they may call.

Keys are held only as SHA-256 digests. A presented key is hashed and compared with every configured
digest in constant time (``hmac.compare_digest`` over all of them, no early exit), so neither timing
nor error text tells anything about the keys. The 401 body is one constant message that never
echoes what was presented.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from decimal import Decimal

from gateway.config.schema import AuthConfig, KeyConfig
from gateway.wire.errors import AuthenticationFailed, ModelNotFound

UNAUTHORIZED = "Invalid or missing API key. Send 'Authorization: Bearer <key>'."


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    pools: frozenset[str]
    models: frozenset[str]
    rpm: int | None
    budget_usd_per_day: Decimal | None

    def may_call(self, name: str, *, is_pool: bool) -> bool:
        allowed = self.pools if is_pool else self.models
        return "*" in allowed or name in allowed


#: With no keys configured (loopback only), every caller is this one.
ANONYMOUS = Principal("anonymous", frozenset({"*"}), frozenset({"*"}), None, None)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _principal(k: KeyConfig) -> Principal:
    return Principal(k.name, frozenset(k.pools), frozenset(k.models), k.rpm, k.budget_usd_per_day)


class KeyRing:
    def __init__(self, config: AuthConfig) -> None:
        self._keys: list[tuple[bytes, Principal]] = []
        for k in config.keys:
            d = bytes.fromhex(k.key_sha256) if k.key_sha256 else digest(k.key.get_secret_value())  # type: ignore[union-attr]
            self._keys.append((d, _principal(k)))
        self._admin = digest(config.admin_key.get_secret_value()) if config.admin_key is not None else None

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, authorization: str | None) -> Principal:
        if not self._keys:
            return ANONYMOUS
        presented = bearer(authorization)
        if presented is None:
            raise AuthenticationFailed(UNAUTHORIZED)
        d = digest(presented)
        found: Principal | None = None
        for known, principal in self._keys:
            if hmac.compare_digest(d, known) and found is None:
                found = principal
        if found is None:
            raise AuthenticationFailed(UNAUTHORIZED)
        return found

    def authorize(self, principal: Principal, name: str, *, is_pool: bool) -> None:
        # The same answer as for a name that does not exist: a limited key cannot tell the two apart,
        # so it cannot list what else the gateway serves.
        if not principal.may_call(name, is_pool=is_pool):
            raise no_such_model(name)

    def is_admin(self, authorization: str | None) -> bool:
        presented = bearer(authorization)
        if self._admin is None or presented is None:
            return False
        return hmac.compare_digest(digest(presented), self._admin)


def no_such_model(name: str) -> ModelNotFound:
    """404 ``model_not_found``: for a name that does not exist, and for one the caller may not use."""
    return ModelNotFound(f"The model '{name}' does not exist or you do not have access to it", param="model")


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
