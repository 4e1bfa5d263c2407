"""One pool request from plan to finished outcome: the baseline sample, the pool run, and the books."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from fusion_modes.base import Emit, FusionError
from gateway.books.calls import Ledger
from gateway.books.record import FusionMetadata
from gateway.pipeline.baseline import Sample, Shadowed
from gateway.pipeline.cascade import run_cascade
from gateway.pipeline.context import RequestContext
from gateway.pipeline.events import FusionEvents
from gateway.pipeline.outcome import pool_answer, pool_answered, pool_failed
from gateway.pipeline.plan import PoolPlan
from gateway.pipeline.pool import PoolOutcome, Timeline, run_pool
from gateway.wire.errors import GatewayError


class FusedRequest:
    """Runs a pool for one request; the route shapes what :meth:`run` returns into JSON or a stream."""

    def __init__(self, ctx: RequestContext, plan: PoolPlan) -> None:
        self.ctx = ctx
        self.plan = plan
        self.ledger = Ledger()
        self._sample: Sample | None = None

    async def run(self, emit: Emit | None = None, events: FusionEvents | None = None) -> PoolOutcome:
        ctx, plan = self.ctx, self.plan
        # The baseline starts with the members, before the fan-out.
        self._sample = ctx.services.baseline.start(ctx.runtime, plan, Shadowed(ctx.request_id, ctx.principal.name))
        run = run_cascade if plan.mode == "cascade" else run_pool
        try:
            return await run(
                ctx.runtime.caller,
                plan,
                self.ledger,
                Timeline(start=ctx.started),
                deadline=ctx.started + plan.pool.deadline_s,
                rng=random.Random(secrets.randbits(64)),
                emit=emit,
                events=events,
            )
        except BaseException:
            if self._sample is not None:
                self._sample.deliver(None)
            raise

    @contextmanager
    def answering(self, outcome: PoolOutcome) -> Iterator[FusionMetadata]:
        """The ``fusion`` metadata of a finished pool answer (its receipt is kept now), for the block that
        writes the answer. The rest of its books are kept when the block is left, once the answer has gone
        out: the caller does not wait for metrics, stats and log fields."""
        meta, latency = pool_answer(self.ctx, outcome, self._sample)
        try:
            yield meta
        finally:
            pool_answered(self.ctx, outcome, meta, latency, self._sample)

    def failed(self, exc: GatewayError | FusionError) -> GatewayError:
        """Record a failed pool request; the error to show the caller."""
        return pool_failed(self.ctx, self.plan, self.ledger, exc)
