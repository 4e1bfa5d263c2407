"""Everything one running gateway owns: the live runtime, metrics, background work. No module globals."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from gateway.baseline import BaselineSampler
from gateway.config.loader import GatewayConfig
from gateway.metrics import Metrics
from gateway.runtime import Runtime, build_runtime
from gateway.stats import StatsStore

log = logging.getLogger("fusion_gateway")


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.metrics = Metrics()
        self.runtime: Runtime = build_runtime(config, self.metrics)
        self.stats = StatsStore()
        self.baseline = BaselineSampler(self.metrics, self.stats, config.server.background_max_inflight)
        self.started_at = int(time.time())
        self.ready = False
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(time.time())

    @property
    def config(self) -> GatewayConfig:
        return self.runtime.config

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            # Background work (baseline samples) lives here: bounded by the app's lifetime, cancelled
            # cleanly at shutdown, never awaited by a request.
            self.baseline.task_group = tg
            self.ready = True
            try:
                yield
            finally:
                self.ready = False
                self.baseline.task_group = None
                tg.cancel_scope.cancel()
        await self.aclose()
        self.metrics.process_exit()

    async def aclose(self) -> None:
        for provider in self.runtime.providers.values():
            await provider.aclose()
