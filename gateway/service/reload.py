"""Hot reload: a file watcher, SIGHUP and ``POST /admin/reload`` all end here.

The new file is parsed and validated in full, then swapped in at once: a request runs start to end on
the runtime it started with. An invalid file changes nothing; the error (with file and line) is
logged and ``fusion_config_last_reload_successful`` drops to 0 until a good file loads.
Providers whose settings did not change keep their connection pools; the others are closed once no
request can still be using them (every request is bounded by its deadline).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from gateway.config import GatewayConfig, load_config
from gateway.pipeline.runtime import build_runtime, retired_providers
from gateway.wire.errors import ConfigError

if TYPE_CHECKING:
    from gateway.service.gateway import Gateway


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    changed: bool
    message: str


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a Kubernetes ConfigMap update swaps the link target
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Reloader:
    def __init__(self, gateway: Gateway, path: str | None) -> None:
        self._gw = gateway
        self.path = path
        self._lock = anyio.Lock()
        #: contents of the last file tried (loaded or refused): the watcher skips changes that are not
        #: changes of contents, and a good file written back after a bad one is loaded again
        self._digest: bytes | None = self._read_digest()

    def _read_digest(self) -> bytes | None:
        if self.path is None:
            return None
        try:
            with open(self.path, "rb") as fh:
                return hashlib.sha256(fh.read()).digest()
        except OSError:
            return None

    async def reload(self, reason: str) -> ReloadResult:
        if self.path is None:
            return ReloadResult(False, False, "this gateway was not started from a config file")
        async with self._lock:
            return self._reload(reason)

    def _reload(self, reason: str) -> ReloadResult:
        gw, log = self._gw, self._gw.log
        assert self.path is not None
        self._digest = self._read_digest()
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            gw.metrics.reload_ok.set(0)
            log.error("config reload failed", extra={"fields": {"reason": reason, "error": exc.message}})
            return ReloadResult(False, False, exc.message)
        old = gw.runtime
        new = build_runtime(config, gw.metrics, previous=old)
        gw.install(new)
        gw.metrics.reload_ok.set(1)
        gw.metrics.reload_ts.set(time.time())
        retired = retired_providers(old, new)
        if retired:
            gw.close_later(retired, _longest_request_s(old.config))
        log.info("config reloaded", extra={"fields": {"reason": reason, "path": self.path,
                                                      "providers_replaced": [p.name for p in retired]}})
        return ReloadResult(True, True, "reloaded")

    async def watch(self, interval_s: float) -> None:
        """Poll the file; reload when its contents change (a touch alone does not reload)."""
        if self.path is None:
            return
        seen = _signature(self.path)
        while True:
            await anyio.sleep(interval_s)
            sig = _signature(self.path)
            if sig == seen:
                continue
            seen = sig
            if sig is not None and self._read_digest() != self._digest:
                await self.reload("file changed")


def _longest_request_s(config: GatewayConfig) -> float:
    """No request can live longer than this: pools end at deadline_s, passthrough calls at total_s."""
    longest = max((m.timeouts.total_s for m in config.models.values()), default=0.0)
    for pool in config.pools.values():
        judge = pool.judge.timeout_s if pool.judge else 0.0
        longest = max(longest, pool.deadline_s + judge)
    return longest + 5.0

