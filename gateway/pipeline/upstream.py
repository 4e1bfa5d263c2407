"""One upstream call, done right: retries, deadlines, and a record of what it cost and how long it took.

Every call the gateway makes goes through :class:`UpstreamCaller` and fills in the
:class:`~gateway.books.calls.CallRecord` it is handed. A call that was cut or cancelled is charged for
what it produced; when the upstream did not report usage, the gateway counts (``estimated``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import anyio

from gateway.books.calls import CallRecord
from gateway.books.cost import call_cost
from gateway.books.metrics import Metrics
from gateway.books.tokens import count_messages, count_text
from gateway.books.traces import Tracing
from gateway.books.usage import Usage
from gateway.config.loader import ModelSpec
from gateway.providers.base import Provider
from gateway.providers.transport import call_headers
from gateway.wire.assemble import Accumulator
from gateway.wire.deadline import within
from gateway.wire.errors import UpstreamError, UpstreamTimeout

OnDelta = Callable[[str], Awaitable[None]]
#: (chunk, the content text it added)
OnChunk = Callable[[dict[str, Any], str], Awaitable[None]]


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): uniform in [0, min(cap, base * 2^n)]."""
    return rng.uniform(0, min(cap, base * 2**attempt))


class UpstreamCaller:
    """Makes upstream calls. Bounds each by a wall clock: the request's deadline and the model's
    ``timeouts.total_s``, whichever comes first. Providers enforce only the first byte of a stream."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        metrics: Metrics,
        rng: random.Random | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.providers = providers
        self.metrics = metrics
        self._rng = rng or random.Random()
        #: None when tracing is off: each call then checks one ``if`` and nothing more
        self.tracing = tracing

    def provider(self, spec: ModelSpec) -> Provider:
        return self.providers[spec.provider]

    # ------------------------------------------------------------------ public calls

    async def complete(
        self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, deadline: float
    ) -> dict[str, Any]:
        """A non-streamed call (passthrough of a non-streamed request)."""
        if self.tracing is not None:
            with self._traced(spec, body, record):
                return await self._complete(spec, body, record, deadline)
        return await self._complete(spec, body, record, deadline)

    async def _complete(
        self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, deadline: float
    ) -> dict[str, Any]:
        provider = self.provider(spec)
        result: dict[str, Any] = {}

        async def attempt() -> None:
            nonlocal result
            result = await provider.complete(spec, body)

        try:
            await self._run(spec, record, deadline, attempt, produced=lambda: False)
            record.usage = Usage.from_openai(result.get("usage"))
        finally:
            self._settle(spec, body, record, "")
        return result

    async def collect(
        self,
        spec: ModelSpec,
        body: dict[str, Any],
        record: CallRecord,
        deadline: float,
        on_delta: OnDelta | None = None,
    ) -> Accumulator:
        """A streamed call assembled into one message (members, judges). ``on_delta`` sees text as it comes."""
        if on_delta is None:
            return await self._stream(spec, body, record, deadline, None)
        delta = on_delta

        async def on_chunk(chunk: dict[str, Any], added: str) -> None:
            if added:
                await delta(added)

        return await self._stream(spec, body, record, deadline, on_chunk)

    async def relay(
        self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, deadline: float, on_chunk: OnChunk
    ) -> Accumulator:
        """A streamed call passed on chunk by chunk (passthrough). No retry once a chunk has gone out."""
        return await self._stream(spec, body, record, deadline, on_chunk)

    async def _stream(
        self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, deadline: float, on_chunk: OnChunk | None
    ) -> Accumulator:
        if self.tracing is not None:
            with self._traced(spec, body, record):
                return await self._stream_call(spec, body, record, deadline, on_chunk)
        return await self._stream_call(spec, body, record, deadline, on_chunk)

    async def _stream_call(
        self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, deadline: float, on_chunk: OnChunk | None
    ) -> Accumulator:
        provider = self.provider(spec)
        acc = Accumulator()
        upstream_usage: Usage | None = None
        passed_on = False
        #: seconds from the start of the last attempt to its first chunk with content (0: none yet)
        first_chunk = 0.0

        async def attempt() -> None:
            nonlocal upstream_usage, passed_on, first_chunk
            # Chunks that say nothing yet (the role, empty content) are held back, so that an upstream
            # failing right after them can still be retried: nothing has reached the caller.
            held: list[tuple[dict[str, Any], str]] = []
            started = time.monotonic()
            first_chunk = 0.0
            async with provider.stream(spec, body) as chunks:
                async for chunk in chunks:
                    added = acc.add(chunk)
                    if not first_chunk and (added or not _says_nothing(chunk)):
                        first_chunk = time.monotonic() - started
                    if on_chunk is None:
                        continue
                    if not passed_on and _says_nothing(chunk):
                        held.append((chunk, added))
                        continue
                    passed_on = True
                    for h in held:
                        await on_chunk(*h)
                    held.clear()
                    await on_chunk(chunk, added)
                upstream_usage = chunks.usage
            if held and on_chunk is not None:
                passed_on = True
                for h in held:
                    await on_chunk(*h)

        try:
            await self._run(spec, record, deadline, attempt, produced=lambda: passed_on or bool(acc.produced_text()))
        finally:
            record.usage = upstream_usage
            self._settle(spec, body, record, acc.produced_text())
            if first_chunk:
                self.metrics.call_first_chunk(self.provider(spec).kind, spec.name, first_chunk)
        return acc

    # ------------------------------------------------------------------ machinery

    @contextmanager
    def _traced(self, spec: ModelSpec, body: dict[str, Any], record: CallRecord) -> Iterator[None]:
        """The call's span, current while it runs, and its ``traceparent`` sent upstream."""
        assert self.tracing is not None
        with self.tracing.call(record, self.provider(spec).kind, spec.upstream, body) as headers:
            token = call_headers.set(headers)
            try:
                yield
            finally:
                call_headers.reset(token)

    async def _run(
        self,
        spec: ModelSpec,
        record: CallRecord,
        deadline: float,
        attempt: Callable[[], Awaitable[None]],
        produced: Callable[[], bool],
    ) -> None:
        """Attempts, retried on 429/5xx/connect errors with full-jitter backoff, honouring Retry-After,
        only while the deadline allows and while nothing has been produced (a half-streamed answer is
        never silently restarted)."""
        policy = self.provider(spec).config.retry
        record.started = time.monotonic()
        deadline = min(deadline, record.started + spec.timeouts.total_s)
        n = 0
        t0 = record.started
        try:
            while True:
                record.attempts += 1
                t0 = time.monotonic()
                try:
                    try:
                        async with within(deadline - t0):
                            await attempt()
                    except TimeoutError as exc:
                        raise UpstreamTimeout(f"upstream '{spec.name}' exceeded its wall-clock limit") from exc
                except UpstreamError as exc:
                    self._observe(spec, t0, exc.kind)
                    wait = backoff_s(n, policy.backoff_base_s, policy.backoff_max_s, self._rng)
                    if exc.retry_after_s is not None:
                        wait = max(wait, exc.retry_after_s)
                    if (
                        not exc.retryable
                        or n >= policy.max_retries
                        or produced()
                        or time.monotonic() + wait >= deadline
                    ):
                        raise
                    n += 1
                    await anyio.sleep(wait)
                    continue
                self._observe(spec, t0, "")
                record.status = "ok"
                return
        except UpstreamTimeout as exc:
            record.status, record.error = "timeout", exc
            raise
        except UpstreamError as exc:
            record.status, record.error = "error", exc
            raise
        except BaseException:
            # cancelled: quorum and grace met, the deadline passed, or the client left
            record.status = "cancelled"
            self._observe(spec, t0, "cancelled")
            raise
        finally:
            record.ended = time.monotonic()

    def _settle(self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, produced: str) -> None:
        """Fill in usage (estimated if the upstream did not say) and cost, and count them."""
        if record.usage is None and _billable(record, produced):
            record.usage = Usage(
                prompt_tokens=count_messages(body.get("messages") or (), count_text),
                completion_tokens=count_text(produced) if produced else 0,
                estimated=True,
            )
        record.cost = call_cost(spec.price, record.usage)
        if record.usage is None:
            if spec.price is not None:
                record.cost = Decimal(0)  # refused or never sent: nothing was billed (unpriced stays unknown)
            return
        self.metrics.call_settled(
            self.provider(spec).kind, spec.name, record.pool, _cost_role(record.role), record.usage, record.cost,
            priced=spec.price is not None,
        )

    def _observe(self, spec: ModelSpec, t0: float, error_type: str) -> None:
        self.metrics.call_attempted(self.provider(spec).kind, spec.name, error_type, time.monotonic() - t0)


def _says_nothing(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    if not choices or chunk.get("usage"):
        return False
    for c in choices:
        d = c.get("delta") or {}
        if c.get("finish_reason") or d.get("content") or d.get("tool_calls") or d.get("refusal"):
            return False
    return True


def _billable(record: CallRecord, produced: str) -> bool:
    """Was this call (probably) billed upstream although it reported no usage?

    A call that produced text was. A call cancelled or timed out while the upstream worked on it is
    charged its prompt (conservative: an unknown cost must not look free). One the upstream refused
    with an error status was not.
    """
    if produced:
        return True
    if record.status in ("cancelled", "timeout"):
        return record.attempts > 0
    return record.status == "ok"


def _cost_role(role: str) -> str:
    return "member" if role == "passthrough" else role
