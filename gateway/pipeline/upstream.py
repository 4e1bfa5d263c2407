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
from gateway.config.providers import RetryPolicy
from gateway.config.server import RetryBudget as RetryBudgetConfig
from gateway.pipeline.balancer import Balancer, RetryBudget
from gateway.providers.base import Provider
from gateway.providers.transport import call_headers
from gateway.wire.assemble import Accumulator
from gateway.wire.deadline import within
from gateway.wire.errors import UpstreamError, UpstreamTimeout

OnDelta = Callable[[str], Awaitable[None]]
#: (chunk, the content text it added)
OnChunk = Callable[[dict[str, Any], str], Awaitable[None]]
#: one try against the given target (the model itself, a deployment, or a fallback's deployment)
Attempt = Callable[[ModelSpec], Awaitable[None]]


#: weight of the newest call in a model's expected latency
_EXPECTED_ALPHA = 0.2


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): uniform in [0, min(cap, base * 2^n)]."""
    return rng.uniform(0, min(cap, base * 2**attempt))


class UpstreamCaller:
    """Makes upstream calls. Bounds each by a wall clock: the request's deadline and the model's
    ``timeouts.total_s``, whichever comes first. Providers enforce only the first byte of a stream.

    A model served in one place is called directly. A balanced model (several deployments, or fallbacks)
    has each attempt placed by the :class:`Balancer`; retries prefer another deployment, and when the
    model cannot answer the call steps to its fallbacks in order, all within the same deadline. Every
    retry and fallback spends from the :class:`RetryBudget`.
    """

    def __init__(
        self,
        providers: Mapping[str, Provider],
        metrics: Metrics,
        rng: random.Random | None = None,
        *,
        models: Mapping[str, ModelSpec] | None = None,
        balancer: Balancer | None = None,
        budget: RetryBudget | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.providers = providers
        self.metrics = metrics
        self._rng = rng or random.Random()
        self.models: Mapping[str, ModelSpec] = models or {}
        self.balancer = balancer or Balancer(metrics, self._rng)
        self.budget = budget or RetryBudget(RetryBudgetConfig())
        #: None when tracing is off: each call then checks one ``if`` and nothing more
        self.tracing = tracing
        #: model name -> how long its successful calls took lately (EWMA, seconds): the fan-out starts
        #: the member expected to answer last first, so that its request leaves first
        self._expected_s: dict[str, float] = {}

    def provider(self, spec: ModelSpec) -> Provider:
        return self.providers[spec.provider]

    def expected_s(self, model: str) -> float:
        """How long a call of ``model`` took lately (0.0: not known yet)."""
        return self._expected_s.get(model, 0.0)

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
        result: dict[str, Any] = {}
        target = spec

        async def attempt(to: ModelSpec) -> None:
            nonlocal result, target
            target = to
            result = await self.providers[to.provider].complete(to, _for(to, body))

        try:
            await self._run(spec, record, deadline, attempt, produced=lambda: False)
            record.usage = Usage.from_openai(result.get("usage"))
        finally:
            self._settle(target, body, record, "")
        return result

    async def embed(self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, deadline: float) -> dict[str, Any]:
        """An embeddings call: priced per input token, recorded like any other call (on whichever
        deployment or fallback answers it)."""
        result: dict[str, Any] = {}
        target = spec

        async def attempt(to: ModelSpec) -> None:
            nonlocal result, target
            target = to
            result = await self.providers[to.provider].embed(to, _for(to, body))

        try:
            await self._run(spec, record, deadline, attempt, produced=lambda: False)
            u = result.get("usage")
            record.usage = Usage.from_openai(
                {"prompt_tokens": u.get("prompt_tokens") if isinstance(u, dict) else None, "completion_tokens": 0}
            ) or Usage(prompt_tokens=embedding_input_tokens(body.get("input")), completion_tokens=0, estimated=True)
        finally:
            self._settle(target, body, record, "")
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
        acc = Accumulator()
        upstream_usage: Usage | None = None
        passed_on = False
        target = spec
        #: seconds from the start of the last attempt to its first chunk with content (0: none yet)
        first_chunk = 0.0

        async def attempt(to: ModelSpec) -> None:
            nonlocal upstream_usage, passed_on, target, first_chunk
            target = to
            # Chunks that say nothing yet (the role, empty content) are held back, so that an upstream
            # failing right after them can still be retried: nothing has reached the caller.
            held: list[tuple[dict[str, Any], str]] = []
            started = time.monotonic()
            first_chunk = 0.0
            async with self.providers[to.provider].stream(to, _for(to, body)) as chunks:
                # The answer began (its response headers): the ledger's time to first byte, of the
                # attempt that answered when there were several.
                record.first_byte = time.monotonic()
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
            self._settle(target, body, record, acc.produced_text())
            if first_chunk:
                self.metrics.call_first_chunk(self.provider(target).kind, target.name, first_chunk)
        return acc

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

    # ------------------------------------------------------------------ machinery

    async def _run(
        self,
        spec: ModelSpec,
        record: CallRecord,
        deadline: float,
        attempt: Attempt,
        produced: Callable[[], bool],
    ) -> None:
        """Attempts, retried on 429/5xx/connect errors with full-jitter backoff, honouring Retry-After,
        only while the deadline allows, the retry budget has room, and nothing has been produced (a
        half-streamed answer is never silently restarted)."""
        record.started = time.monotonic()
        deadline = min(deadline, record.started + spec.timeouts.total_s)
        self.budget.called(record.started)
        try:
            if spec.balanced:
                await self._balanced(spec, record, deadline, attempt, produced)
            else:
                await self._direct(spec, record, deadline, attempt, produced)
            record.status = "ok"
        except UpstreamTimeout as exc:
            record.status, record.error = "timeout", exc
            raise
        except UpstreamError as exc:
            record.status, record.error = "error", exc
            raise
        except BaseException:
            # cancelled: quorum and grace met, the deadline passed, or the client left
            record.status = "cancelled"
            raise
        finally:
            record.ended = time.monotonic()

    async def _direct(
        self, spec: ModelSpec, record: CallRecord, deadline: float, attempt: Attempt, produced: Callable[[], bool]
    ) -> None:
        """A model served in one place: the same upstream, retried."""
        policy = self.provider(spec).config.retry
        n = 0
        while True:
            record.attempts += 1
            try:
                await self._once(spec, deadline, attempt)
                return
            except UpstreamError as exc:
                wait = self._backoff(n, policy, exc)
                if (
                    not exc.retryable
                    or n >= policy.max_retries
                    or produced()
                    or time.monotonic() + wait >= deadline
                    or not self._may_retry()
                ):
                    raise
                n += 1
                await anyio.sleep(wait)

    async def _balanced(
        self, spec: ModelSpec, record: CallRecord, deadline: float, attempt: Attempt, produced: Callable[[], bool]
    ) -> None:
        """The model's deployments, then each fallback's, until one answers or nothing more may be tried."""
        balancer = self.balancer
        chain = [spec, *(self.models[name] for name in spec.fallbacks if name in self.models)]
        last: UpstreamError | None = None
        reason = ""
        for step, model in enumerate(chain):
            if step:
                if not self._may_retry():
                    break
                self.metrics.fallback_taken(spec.name, model.name, reason)
                record.fallback_reason = reason
            policy = self.provider(model.deployments[0].spec).config.retry
            tried: set[str] = set()
            n = 0
            reason = "unavailable"
            while True:
                picked = balancer.pick(model, tried)
                if picked is None:
                    break
                dep, state = picked
                tried.add(dep.key)
                record.attempts += 1
                # Said before the attempt: a relayed stream's headers go out with its first chunk.
                record.answered_by, record.deployment = model.name, dep.key
                t0 = balancer.started(dep, state)
                try:
                    await self._once(dep.spec, deadline, attempt)
                except UpstreamError as exc:
                    verdict = balancer.finished(model, dep, state, t0, exc)
                    last = exc
                    if verdict == "rejected" or produced():
                        raise  # the request itself was refused, or the caller already has part of an answer
                    reason = verdict
                    if n >= policy.max_retries:
                        break
                    wait = 0.0 if balancer.has_fresh(model, tried) else self._backoff(n, policy, exc)
                    if time.monotonic() + wait >= deadline:
                        break
                    if not self._may_retry():
                        raise
                    n += 1
                    if wait:
                        await anyio.sleep(wait)
                    continue
                except BaseException:
                    balancer.finished(model, dep, state, t0, None, cancelled=True)
                    raise
                balancer.finished(model, dep, state, t0, None)
                return
            if time.monotonic() >= deadline:
                break
        if last is not None:
            raise last
        # Nothing anywhere along the chain is in rotation: probe the deployment due back soonest.
        dep, state = balancer.last_resort(spec)
        record.attempts += 1
        record.answered_by, record.deployment, record.fallback_reason = spec.name, dep.key, None
        t0 = balancer.started(dep, state)
        try:
            await self._once(dep.spec, deadline, attempt)
        except UpstreamError as exc:
            balancer.finished(spec, dep, state, t0, exc)
            raise
        except BaseException:
            balancer.finished(spec, dep, state, t0, None, cancelled=True)
            raise
        balancer.finished(spec, dep, state, t0, None)

    async def _once(self, target: ModelSpec, deadline: float, attempt: Attempt) -> None:
        """One attempt against ``target``, bounded by the deadline, observed in the per-call metrics."""
        t0 = time.monotonic()
        try:
            try:
                async with within(deadline - t0):
                    await attempt(target)
            except TimeoutError as exc:
                raise UpstreamTimeout(f"upstream '{target.name}' exceeded its wall-clock limit") from exc
        except UpstreamError as exc:
            self._observe(target, t0, exc.kind)
            raise
        except BaseException:
            self._observe(target, t0, "cancelled")
            raise
        self._observe(target, t0, "")

    def _backoff(self, n: int, policy: RetryPolicy, exc: UpstreamError) -> float:
        wait = backoff_s(n, policy.backoff_base_s, policy.backoff_max_s, self._rng)
        return wait if exc.retry_after_s is None else max(wait, exc.retry_after_s)

    def _may_retry(self) -> bool:
        if self.budget.try_retry():
            return True
        self.metrics.retry_denied()
        return False

    def _settle(self, spec: ModelSpec, body: dict[str, Any], record: CallRecord, produced: str) -> None:
        """Fill in usage (estimated if the upstream did not say) and cost, and count them. ``spec`` is what
        was called last: the deployment (its price) and the model that answered."""
        if record.status == "ok":
            seconds = record.ended - record.started
            old = self._expected_s.get(record.model)
            self._expected_s[record.model] = seconds if old is None else old + _EXPECTED_ALPHA * (seconds - old)
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
        if record.deployment is not None and record.answered_by is not None:
            self.balancer.add_tokens(record.answered_by, record.deployment, record.usage.total_tokens)
        self.metrics.call_settled(
            self.provider(spec).kind, spec.name, record.pool, _cost_role(record.role), record.usage, record.cost,
            priced=spec.price is not None,
        )

    def _observe(self, spec: ModelSpec, t0: float, error_type: str) -> None:
        self.metrics.call_attempted(self.provider(spec).kind, spec.name, error_type, time.monotonic() - t0)


def embedding_input_tokens(value: Any) -> int:
    """Tokens in an embeddings ``input``: text counted, token arrays by length."""
    if isinstance(value, str):
        return count_text(value)
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return len(value)
        return sum(embedding_input_tokens(v) for v in value)
    return 0


def _for(target: ModelSpec, body: dict[str, Any]) -> dict[str, Any]:
    """The body for ``target``: the caller set ``model`` to the model's first upstream name; another
    deployment or a fallback may call it something else."""
    return body if body.get("model") == target.upstream else {**body, "model": target.upstream}


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
