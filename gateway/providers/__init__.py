"""Upstream providers, chosen by the config's ``type:``.

The registry is the config's: each provider config class names its adapter (``adapter``, as
"module:Class"), imported here on first use, so a type nobody configured is never imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from gateway.config.providers import ProviderBase
from gateway.providers.base import ChunkStream, Provider


def adapter_class(config: ProviderBase) -> Any:
    """The adapter class that serves ``config``'s type."""
    module, _, attr = config.adapter_for().partition(":")
    return getattr(importlib.import_module(module), attr)


def create_provider(name: str, config: ProviderBase) -> Provider:
    provider = adapter_class(config)(name, config)
    assert isinstance(provider, Provider)
    return provider


__all__ = ["ChunkStream", "Provider", "adapter_class", "create_provider"]
