"""fusion-gateway: an OpenAI-compatible gateway that fuses several models' answers through a judge."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fusion-gateway")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
