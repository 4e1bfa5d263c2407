"""Offline, deterministic OpenAI-compatible models: in-process (``type: simulator``) or as a server."""

from gateway.providers.simulator.provider import SimulatorProvider

__all__ = ["SimulatorProvider"]
