"""Everything one running gateway owns: the live runtime, metrics, limits, background work. No globals."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from gateway.books import tokens
from gateway.books.ledger.store import LedgerStore, default_url, redact
from gateway.books.ledger.writer import LedgerWriter
from gateway.books.limits import Limits, MemoryLimits
from gateway.books.logs import LOGGER
from gateway.books.metrics import Metrics
from gateway.books.receipts import Receipts
from gateway.books.stats import StatsStore
from gateway.books.traces import Tracing
from gateway.config.loader import GatewayConfig
from gateway.config.schema import LedgerConfig, StateConfig
from gateway.pipeline.baseline import BaselineSampler
from gateway.pipeline.cache import ResponseCache, make_cache
from gateway.pipeline.runtime import Runtime, build_runtime, retired_providers
from gateway.providers import Provider
from gateway.service.reload import Reloader
from gateway.wire.errors import LedgerSchemaError


def make_limits(state: StateConfig) -> Limits:
    if state.redis_url:
        from gateway.books.limits_redis import RedisLimits

        return RedisLimits(state.redis_url, state.key_prefix)
    return MemoryLimits()


def make_ledger(config: LedgerConfig, metrics: Metrics, log: logging.Logger) -> LedgerWriter | None:
    if not config.enabled:
        return None
    store = LedgerStore(config.url or default_url(), migrate_schema=config.migrate)
    return LedgerWriter(store, config, metrics, log)


class Gateway:
    def __init__(self, config: GatewayConfig, config_path: str | None = None, host: str | None = None) -> None:
        """``host``: the address served on, when it is not ``server.host`` (the command line's ``--host``);
        a reload is held to the start-up rules for that address."""
        self.host = host or config.server.host
        self.log = logging.getLogger(LOGGER)
        self.metrics = Metrics()
        self.metrics.declare(config)
        #: None when tracing is off (read once at start: a reload does not switch it)
        self.tracing = Tracing(config.raw.tracing, package_version()) if config.raw.tracing is not None else None
        self.runtime: Runtime = build_runtime(config, self.metrics, tracing=self.tracing)
        self.limits = make_limits(config.state)
        self.cache: ResponseCache | None = make_cache(config.raw.cache)
        self.stats = StatsStore()
        #: every finished request is remembered here (None: ``ledger: none``); its URL is fixed at start
        self.ledger = make_ledger(config.ledger, self.metrics, self.log)
        #: what each recent request of this process cost, for clients that cannot read it from the answer
        #: (``GET /v1/fusion/requests/{id}`` reads the ledger first when there is one)
        self.receipts = Receipts()
        self.baseline = BaselineSampler(
            self.metrics, self.stats, config.server.background_max_inflight, self.ledger
        )
        self.reloader = Reloader(self, config_path)
        self.started_at = int(time.time())
        self.ready = False
        #: set when the shutdown grace has run out: open streams end with an in-band error
        self.draining = anyio.Event()
        self._tg: TaskGroup | None = None
        self._retired: list[Provider] = []
        self.metrics.config_loaded(time.time())

    @property
    def config(self) -> GatewayConfig:
        return self.runtime.config

    def install(self, runtime: Runtime) -> None:
        """Swap in a new runtime. Requests already running keep the one they started with."""
        if runtime.config.state != self.runtime.config.state:
            old_limits, self.limits = self.limits, make_limits(runtime.config.state)
            self.close_later([], 0.0, old_limits)
        if runtime.config.raw.cache != self.runtime.config.raw.cache:
            old_cache, self.cache = self.cache, make_cache(runtime.config.raw.cache)
            if old_cache is not None:
                self.close_later([], 0.0, cache=old_cache)
        self.runtime = runtime

    def install_config(self, config: GatewayConfig, reason: str, path: str) -> None:
        """A reloaded config: swap it in; close the providers it no longer uses once no request can."""
        old = self.runtime
        new = build_runtime(config, self.metrics, previous=old, tracing=self.tracing)
        self.install(new)
        self.metrics.declare(config)
        self.metrics.config_loaded(time.time())
        if config.ledger.url != old.config.ledger.url:
            self.log.warning("ledger.url changed: it takes effect at the next start",
                             extra={"fields": {"path": path}})
        retired = retired_providers(old, new)
        if retired:
            self.close_later(retired, _longest_request_s(old.config))
        self.log.info("config reloaded", extra={"fields": {"reason": reason, "path": path,
                                                           "providers_replaced": [p.name for p in retired]}})
        if config.server.cors != old.config.server.cors:
            # The CORS wrapper is built with the app (so that without CORS it costs nothing at all).
            self.log.warning("server.cors changed: it takes effect at the next restart",
                             extra={"fields": {"reason": reason, "path": path}})

    def refuse_config(self, message: str, reason: str) -> None:
        self.metrics.config_refused()
        self.log.error("config reload failed", extra={"fields": {"reason": reason, "error": message}})

    def close_later(
        self,
        providers: Sequence[Provider],
        delay_s: float,
        limits: Limits | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        async def close() -> None:
            await anyio.sleep(delay_s)
            for p in providers:
                await p.aclose()
                self._retired.remove(p)
            if limits is not None:
                await limits.aclose()
            if cache is not None:
                await cache.aclose()

        self._retired.extend(providers)
        if self._tg is not None:
            self._tg.start_soon(close)

    async def _open_ledger(self) -> None:
        """Say where the ledger is; check its schema. A schema newer than ours stops the start (raises);
        an unreachable database does not: records wait in the queue until it answers."""
        ledger = self.ledger
        if ledger is None:
            self.log.info("ledger: off (ledger: none)")
            return
        url = redact(ledger.store.url)
        try:
            state = await ledger.store.prepare()
        except LedgerSchemaError:
            await ledger.store.aclose()
            raise
        except Exception as exc:
            self.log.error("ledger: database unreachable at start; records are queued until it answers",
                           extra={"fields": {"url": url, "error": f"{type(exc).__name__}: {exc}"[:300]}})
            return
        self.log.info(f"ledger: {url}", extra={"fields": {"url": url, "schema": state.current}})

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        await self._open_ledger()
        # The tokenizer loads its tables (tiktoken may even try to fetch them) on first use: do that
        # now, off the event loop, rather than inside the first request that needs a count.
        await anyio.to_thread.run_sync(tokens.warm)
        async with anyio.create_task_group() as tg:
            # Background work (baseline samples, the config watcher, delayed closes) lives here:
            # bounded by the app's lifetime, cancelled cleanly at shutdown, never awaited by a request.
            self._tg = tg
            self.baseline.task_group = tg
            server = self.config.server
            if server.watch_config and self.reloader.path:
                tg.start_soon(self.reloader.watch, server.watch_interval_s, server.watch_settle_s)
            tg.start_soon(self._signals)
            if self.ledger is not None:
                tg.start_soon(self.ledger.run)
            self.ready = True
            try:
                yield
            finally:
                self.ready = False
                if self.ledger is not None:
                    # Requests are over: what they recorded is written before the process goes.
                    await self.ledger.close(max(5.0, self.config.server.shutdown_grace_s))
                self.baseline.task_group = None
                self._tg = None
                tg.cancel_scope.cancel()
        await self.aclose()
        self.metrics.process_exit()

    def begin_shutdown(self) -> None:
        """SIGTERM: stop being ready at once; after the grace period, end the streams still open."""
        if not self.ready:
            return
        self.ready = False
        grace = self.config.server.shutdown_grace_s
        self.log.info("shutting down", extra={"fields": {"grace_s": grace}})

        async def expire() -> None:
            await anyio.sleep(grace)
            self.draining.set()

        if self._tg is not None:
            self._tg.start_soon(expire)

    async def _signals(self) -> None:
        """SIGHUP reloads; SIGTERM starts the graceful shutdown, then hands over to the server's own
        handler, which stops accepting connections. Signals can only be caught in the main thread
        (tests run servers in threads): elsewhere they are left to the server."""
        previous = signal.getsignal(signal.SIGTERM)
        try:
            receiver = anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP)
            signals = receiver.__enter__()
        except (ValueError, RuntimeError, NotImplementedError):
            return
        try:
            async for sig in signals:
                if sig == signal.SIGHUP:
                    await self.reloader.reload("SIGHUP")
                else:
                    self.begin_shutdown()
                    if callable(previous):
                        previous(signal.SIGTERM, None)
        finally:
            receiver.__exit__(None, None, None)
            if callable(previous):
                with contextlib.suppress(ValueError):
                    signal.signal(signal.SIGTERM, previous)

    async def aclose(self) -> None:
        closed: set[int] = set()
        for provider in [*self.runtime.providers.values(), *self._retired]:
            if id(provider) not in closed:
                closed.add(id(provider))
                await provider.aclose()
        await self.limits.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.tracing is not None:
            await anyio.to_thread.run_sync(self.tracing.shutdown)  # flushes the last spans over HTTP


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fusion-gateway")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return ""


def _longest_request_s(config: GatewayConfig) -> float:
    """No request can live longer than this: pools end at deadline_s, passthrough calls at total_s."""
    longest = max((m.timeouts.total_s for m in config.models.values()), default=0.0)
    for pool in config.pools.values():
        judge = pool.judge.timeout_s if pool.judge else 0.0
        longest = max(longest, pool.deadline_s + judge)
    return longest + 5.0

