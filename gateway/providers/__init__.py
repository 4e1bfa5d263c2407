"""Upstream providers, chosen by the config's ``type:`` through the table below."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.config.schema import ProviderBase
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import ChunkStream, Provider
from gateway.providers.gemini import GeminiProvider
from gateway.providers.openai_compat import OpenAIProvider
from gateway.providers.simulator import SimulatorProvider

PROVIDERS: Mapping[str, Callable[[str, Any], Provider]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "simulator": SimulatorProvider,
}


def create_provider(name: str, config: ProviderBase) -> Provider:
    kind = str(getattr(config, "type", ""))
    return PROVIDERS[kind](name, config)


__all__ = ["PROVIDERS", "ChunkStream", "Provider", "create_provider"]
