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
from dataclasses import dataclass
from typing import Protocol

import anyio

from gateway.config import GatewayConfig, load_config
from gateway.pipeline.auth import is_loopback
from gateway.wire.errors import ConfigError


class ConfigTarget(Protocol):
    """What a reload acts on (the running gateway): install a config that loaded, or note a refusal."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def host(self) -> str: ...

    def install_config(self, config: GatewayConfig, reason: str, path: str) -> None: ...

    def refuse_config(self, message: str, reason: str) -> None: ...


def reload_refusal(old: GatewayConfig, new: GatewayConfig, host: str) -> str | None:
    """Why ``new`` may not replace ``old`` on a gateway serving on ``host``, or None if it may."""
    if old.auth.keys and not new.auth.keys:
        return "refused: the new config has no client keys (auth.keys) and would serve without authentication"
    if old.auth.admin_key is not None and new.auth.admin_key is None:
        return "refused: the new config has no admin key (auth.admin_key); no later reload could be asked for"
    if not new.models and not new.pools:
        return "refused: the new config has no models and no pools; it would serve nothing"
    if not new.auth.keys and not is_loopback(host):
        return (f"refused: the new config has no client keys (auth.keys) and the gateway serves on {host}, "
                "beyond loopback")
    return None


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
    def __init__(self, target: ConfigTarget, path: str | None) -> None:
        self._target = target
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
        assert self.path is not None
        self._digest = self._read_digest()
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            self._target.refuse_config(exc.message, reason)
            return ReloadResult(False, False, exc.message)
        refusal = reload_refusal(self._target.config, config, self._target.host)
        if refusal is not None:
            message = f"{self.path}: {refusal}"
            self._target.refuse_config(message, reason)
            return ReloadResult(False, False, message)
        self._target.install_config(config, reason, self.path)
        return ReloadResult(True, True, "reloaded")

    async def watch(self, interval_s: float, settle_s: float) -> None:
        """Poll the file; reload when its contents change (a touch alone does not reload), once the file
        has stopped changing for ``settle_s``: a writer still at work is waited for, never read midway."""
        if self.path is None:
            return
        seen = _signature(self.path)
        while True:
            await anyio.sleep(interval_s)
            sig = _signature(self.path)
            if sig == seen:
                continue
            while True:
                await anyio.sleep(settle_s)
                again = _signature(self.path)
                if again == sig:
                    break
                sig = again
            seen = sig
            if sig is not None and self._read_digest() != self._digest:
                await self.reload("file changed")

