"""The upstream interface. The registry that picks an implementation by ``type:`` is in ``__init__``.

A provider speaks OpenAI Chat Completions to the rest of the gateway, whatever it speaks upstream:
``complete`` returns a ``chat.completion`` dict, ``stream`` yields ``chat.completion.chunk`` dicts.
Both raise only :class:`gateway.wire.errors.UpstreamError` subclasses.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

from gateway.books.usage import Usage
from gateway.config.loader import ModelSpec
from gateway.config.providers import ProviderBase
from gateway.wire.sse import DEFAULT_MAX_EVENT_BYTES


class ChunkStream(abc.ABC):
    """An open upstream stream. Iterate for chunks; ``usage`` holds the upstream's usage once seen;
    ``finished`` turns true only when the stream ended properly (a cut stream raises instead)."""

    usage: Usage | None = None
    finished: bool = False
    #: the largest event its decoder accepts; the provider sets its configured cap when it opens the stream
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...


class Provider(abc.ABC):
    """One configured upstream. Owns its connection pool; ``aclose`` releases it."""

    def __init__(self, name: str, config: ProviderBase) -> None:
        self.name = name
        self.config = config

    @property
    def kind(self) -> str:
        """The provider's wire family, for the ``gen_ai_provider_name`` metric label."""
        return str(getattr(self.config, "type", "unknown"))

    @abc.abstractmethod
    async def complete(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed completion. ``body['model']`` is already the upstream name."""

    @abc.abstractmethod
    def stream(self, spec: ModelSpec, body: dict[str, Any]) -> AbstractAsyncContextManager[ChunkStream]:
        """Open a streamed completion; the context exit closes the upstream connection."""

    #: whether :meth:`embed` is served (``POST /v1/embeddings`` refuses other models with a 400)
    serves_embeddings: bool = False

    async def embed(self, spec: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
        """One embeddings call (OpenAI's request and ``list`` answer). ``body['model']`` is the upstream name."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None
