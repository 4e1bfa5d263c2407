"""Rates and budgets in Redis, shared by every replica and surviving restarts.

Each operation is one Lua script, so it is atomic however many gateways race on the same key; time
comes from Redis itself (``TIME``), so replicas with skewed clocks agree.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from gateway.books.limits import WINDOW_S, Limits, Reservation, from_nano, to_nano, utc_day
from gateway.wire.errors import ServiceUnavailable

# KEYS[1] window zset; ARGV[1] limit, ARGV[2] window ms, ARGV[3] unique member
_HIT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""

# KEYS[1] budget hash; ARGV[1] budget nano, ARGV[2] amount nano
_RESERVE = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
if spent + reserved >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[2])
redis.call('EXPIRE', KEYS[1], 172800)
return 1
"""

# KEYS[1] budget hash; ARGV[1] reserved nano to release, ARGV[2] actual nano
_SETTLE = """
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
redis.call('EXPIRE', KEYS[1], 172800)
return 1
"""


class RedisLimits(Limits):
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self._redis: Any = aioredis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._hit = self._redis.register_script(_HIT)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    def _budget_key(self, key: str, day: str) -> str:
        return f"{self._prefix}budget:{key}:{day}"

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        import redis.exceptions

        try:
            return await script(keys=keys, args=args)
        except redis.exceptions.RedisError as exc:
            # Limits that cannot be checked must not be skipped: refuse, and say it is temporary.
            raise ServiceUnavailable("rate-limit and budget state is unavailable; retry shortly") from exc

    async def hit(self, key: str, rpm: int) -> float | None:
        wait_ms = await self._call(self._hit, [f"{self._prefix}rpm:{key}"],
                                   [rpm, int(WINDOW_S * 1000), secrets.token_hex(8)])
        return None if int(wait_ms) < 0 else max(0.001, int(wait_ms) / 1000)

    async def reserve(self, key: str, budget: Decimal, amount: Decimal) -> Reservation | None:
        day = utc_day()
        n = to_nano(amount)
        ok = await self._call(self._reserve, [self._budget_key(key, day)], [to_nano(budget), n])
        return Reservation(key, day, n) if int(ok) == 1 else None

    async def settle(self, reservation: Reservation, actual: Decimal) -> None:
        await self._call(self._settle, [self._budget_key(reservation.key, reservation.day)],
                         [reservation.nano, to_nano(actual)])

    async def spent(self, key: str) -> Decimal:
        value = await self._redis.hget(self._budget_key(key, utc_day()), "spent")
        return from_nano(int(value or 0))

    async def aclose(self) -> None:
        await self._redis.aclose()
