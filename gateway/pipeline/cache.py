"""Exact-match cache of answers: a repeated question costs nothing and waits for no upstream.

The key is the normalised request: the model or pool name, the messages and every field that changes the
answer (stream flags, ``user``, ``metadata`` and the like do not), and, unless the operator shares entries,
the caller's key name, so tenants never see each other's answers. Requests asking for sampling
(``temperature > 0``) are not cached unless ``cache.sampled`` says so: a repeat would otherwise always get
the same draw. The entry is the answer as it is replayed (JSON bytes, ready to send), with the cost the
original call paid, which is what each hit saves.

Entries live in this process (:class:`MemoryCache`, least recently used evicted past ``max_entries``) or
in Redis (:class:`RedisCache`, shared by a fleet). Both expire after ``ttl_s``. A cache that cannot be
reached is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson

from gateway.books.logs import LOGGER
from gateway.config.schema import CacheConfig

#: request fields that do not change the answer
IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier", "fusion"})
#: ``fusion`` options that do not change the answer
IGNORED_FUSION = frozenset({"cache", "events"})


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    #: the ``chat.completion`` as replayed, JSON
    body: bytes
    #: what the original answer cost (None: a model without a price)
    saved: Decimal | None


def cache_key(config: CacheConfig, name: str, body: dict[str, Any], principal: str) -> str | None:
    """The key of this request's answer, or None when it must not be cached (sampling asked for)."""
    t = body.get("temperature")
    if not config.sampled and isinstance(t, int | float) and t > 0:
        return None
    norm = {k: v for k, v in body.items() if k not in IGNORED}
    fusion = body.get("fusion")
    if isinstance(fusion, dict):
        norm["fusion"] = {k: v for k, v in fusion.items() if k not in IGNORED_FUSION}
    norm["model"] = name
    norm["\0scope"] = principal if config.scope == "key" else ""
    return hashlib.sha256(orjson.dumps(norm, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ResponseCache(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer) -> None: ...

    async def aclose(self) -> None: ...


class MemoryCache:
    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def put(self, key: str, answer: CachedAnswer) -> None:
        if len(answer.body) > self.config.max_entry_bytes:
            return
        self._entries[key] = (time.monotonic() + self.config.ttl_s, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.config.max_entries:
            self._entries.popitem(last=False)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisCache:
    """Entries as ``<saved cost>\\n<body>`` under ``key_prefix + key``, expiring by Redis's own clock."""

    def __init__(self, config: CacheConfig, url: str) -> None:
        import redis.asyncio as aioredis

        self.config = config
        self._redis: Any = aioredis.from_url(url)
        self._log = logging.getLogger(LOGGER)

    async def get(self, key: str) -> CachedAnswer | None:
        import redis.exceptions

        try:
            raw = await self._redis.get(self.config.key_prefix + key)
        except redis.exceptions.RedisError as exc:
            self._log.warning("response cache unavailable", extra={"fields": {"error": type(exc).__name__}})
            return None
        if raw is None:
            return None
        saved, _, body = bytes(raw).partition(b"\n")
        return CachedAnswer(body, Decimal(saved.decode()) if saved else None)

    async def put(self, key: str, answer: CachedAnswer) -> None:
        import redis.exceptions

        if len(answer.body) > self.config.max_entry_bytes:
            return
        saved = b"" if answer.saved is None else str(answer.saved).encode()
        try:
            await self._redis.set(self.config.key_prefix + key, saved + b"\n" + answer.body,
                                  px=int(self.config.ttl_s * 1000))
        except redis.exceptions.RedisError as exc:
            self._log.warning("response cache unavailable", extra={"fields": {"error": type(exc).__name__}})

    async def aclose(self) -> None:
        await self._redis.aclose()


def make_cache(config: CacheConfig) -> ResponseCache | None:
    if not config.enabled:
        return None
    if config.redis_url:
        return RedisCache(config, config.redis_url)
    return MemoryCache(config)
