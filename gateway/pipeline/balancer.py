"""Which deployment of a model takes the next attempt, and which are out of rotation.

A model with several deployments (or with fallbacks) is *balanced*: each attempt asks :class:`Balancer`
for a deployment, then reports how it went. The balancer keeps, per deployment, the calls in flight, an
EWMA of recent latency, its own rpm/tpm windows, and Envoy's outlier detection: ``consecutive_failures``
failures in a row (5xx, connect errors, timeouts; a 4xx is the request's fault, not the deployment's)
eject it for ``base_ejection_s`` times the number of times it was ejected (up to ``max_ejection_s``),
never more than ``max_ejected_percent`` of a model's deployments at once (at least one may always be).
After the time it is back in rotation on probation: real traffic probes it, and one more failure ejects
it again for longer. A 429 takes it out of rotation for its ``Retry-After``.

The state lives as long as the gateway (a reload keeps it), never in a global, and is per process.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

from gateway.books.metrics import Metrics
from gateway.config.loader import Deployment, ModelSpec
from gateway.config.server import RetryBudget as RetryBudgetConfig
from gateway.wire.errors import UpstreamError, UpstreamStatusError

#: how an attempt ended, as the balancer sees it
Verdict = Literal["ok", "failure", "rate_limited", "rejected", "cancelled"]

#: weight of the newest sample in the latency average
EWMA_ALPHA = 0.3
MINUTE_S = 60.0


def judge_failure(exc: UpstreamError) -> Verdict:
    """A failure of the deployment (counts towards ejection; another deployment or model may answer),
    a rate limit (cool down; may step aside), or a refusal of the request itself (never stepped around:
    another deployment would refuse it too, and a content-policy refusal must not be laundered)."""
    if isinstance(exc, UpstreamStatusError):
        if exc.upstream_status == 429:
            return "rate_limited"
        return "failure" if exc.upstream_status >= 500 else "rejected"
    return "failure"  # timeouts, connect errors, broken streams


class _MinuteWindow:
    """A sum over the last minute (rpm, tpm)."""

    __slots__ = ("_entries", "_sum")

    def __init__(self) -> None:
        self._entries: deque[tuple[float, int]] = deque()
        self._sum = 0

    def add(self, now: float, n: int) -> None:
        self._entries.append((now, n))
        self._sum += n

    def total(self, now: float) -> int:
        entries = self._entries
        while entries and entries[0][0] <= now - MINUTE_S:
            self._sum -= entries.popleft()[1]
        return self._sum


@dataclass(slots=True)
class DeploymentState:
    in_flight: int = 0
    ewma_s: float = 0.0
    failures_in_row: int = 0
    ejected_until: float = 0.0
    ejections: int = 0
    last_return: float = 0.0
    #: back from an ejection and not yet proven healthy: one failure ejects it again
    probation: bool = False
    cooldown_until: float = 0.0
    requests: _MinuteWindow = field(default_factory=_MinuteWindow)
    tokens: _MinuteWindow = field(default_factory=_MinuteWindow)


Picked = tuple[Deployment, DeploymentState]


class Balancer:
    def __init__(
        self, metrics: Metrics, rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics = metrics
        self._rng = rng or random.Random()
        self._clock = clock
        self._states: dict[tuple[str, str], DeploymentState] = {}

    def state(self, model: str, key: str) -> DeploymentState:
        st = self._states.get((model, key))
        if st is None:
            st = self._states[(model, key)] = DeploymentState()
        return st

    # ------------------------------------------------------------------ choosing

    def available(self, spec: ModelSpec, now: float) -> list[Picked]:
        """Deployments in rotation: not ejected, not cooling down after a 429, under their rpm and tpm."""
        out: list[Picked] = []
        for d in spec.deployments:
            st = self.state(spec.name, d.key)
            if st.ejected_until:
                if st.ejected_until > now:
                    continue
                st.ejected_until = 0.0
                st.last_return = now
                self.metrics.deployment_returned(spec.name, d.key)
            if st.cooldown_until > now:
                continue
            if d.rpm is not None and st.requests.total(now) >= d.rpm:
                continue
            if d.tpm is not None and st.tokens.total(now) >= d.tpm:
                continue
            out.append((d, st))
        return out

    def pick(self, spec: ModelSpec, tried: Collection[str]) -> Picked | None:
        """A deployment for the next attempt, preferring one this call has not tried; None if none is in
        rotation."""
        avail = self.available(spec, self._clock())
        fresh = [p for p in avail if p[0].key not in tried] or avail
        if len(fresh) <= 1:
            return fresh[0] if fresh else None
        if spec.routing == "weighted":
            return self._rng.choices(fresh, weights=[d.weight for d, _ in fresh])[0]
        if spec.routing == "latency":
            # Never measured counts as fastest, so a new or returning deployment gets traffic.
            best_s = min(st.ewma_s for _, st in fresh)
            return self._rng.choice([p for p in fresh if p[1].ewma_s == best_s])
        least = min(st.in_flight for _, st in fresh)
        return self._rng.choice([p for p in fresh if p[1].in_flight == least])

    def has_fresh(self, spec: ModelSpec, tried: Collection[str]) -> bool:
        return any(d.key not in tried for d, _ in self.available(spec, self._clock()))

    def last_resort(self, spec: ModelSpec) -> Picked:
        """Nothing is in rotation anywhere along the fallbacks: the deployment due back soonest is tried
        anyway (Envoy's panic mode), rather than failing without a call."""
        now = self._clock()
        states = [(d, self.state(spec.name, d.key)) for d in spec.deployments]
        return min(states, key=lambda p: max(p[1].ejected_until, p[1].cooldown_until, now))

    # ------------------------------------------------------------------ reporting

    def started(self, d: Deployment, st: DeploymentState) -> float:
        now = self._clock()
        st.in_flight += 1
        if d.rpm is not None:
            st.requests.add(now, 1)
        return now

    def finished(self, spec: ModelSpec, d: Deployment, st: DeploymentState, t0: float, error: UpstreamError | None,
                 cancelled: bool = False) -> Verdict:
        now = self._clock()
        st.in_flight -= 1
        verdict: Verdict
        if cancelled:
            verdict = "cancelled"
        elif error is None:
            verdict = "ok"
            st.failures_in_row = 0
            st.probation = False
            seconds = now - t0
            st.ewma_s = seconds if st.ewma_s == 0.0 else st.ewma_s + EWMA_ALPHA * (seconds - st.ewma_s)
        else:
            verdict = judge_failure(error)
            if verdict == "rate_limited":
                wait = error.retry_after_s if error.retry_after_s is not None else spec.outlier.rate_limit_cooldown_s
                st.cooldown_until = max(st.cooldown_until, now + wait)
            elif verdict == "failure":
                st.failures_in_row += 1
                if st.probation or st.failures_in_row >= spec.outlier.consecutive_failures:
                    self._eject(spec, d, st, now)
        self.metrics.deployment_called(spec.name, d.key, verdict)
        return verdict

    def add_tokens(self, model: str, key: str, n: int) -> None:
        self.state(model, key).tokens.add(self._clock(), n)

    def _eject(self, spec: ModelSpec, d: Deployment, st: DeploymentState, now: float) -> None:
        if st.ejected_until > now:
            return  # a call that started before the ejection finished after it
        out = spec.outlier
        ejected = sum(1 for o in spec.deployments if self.state(spec.name, o.key).ejected_until > now)
        cap = max(1, math.floor(len(spec.deployments) * out.max_ejected_percent / 100))
        if ejected >= cap:
            return
        if st.ejections and now - st.last_return > out.max_ejection_s:
            st.ejections = 0  # healthy for long enough: the next ejection starts short again
        st.ejections += 1
        st.ejected_until = now + min(out.base_ejection_s * st.ejections, out.max_ejection_s)
        st.failures_in_row = 0
        st.probation = True
        self.metrics.deployment_ejected(spec.name, d.key)


class RetryBudget:
    """Retries (and fallbacks) allowed: at most ``ratio`` of the calls started over the last ``window_s``,
    and always ``min_retries_per_s`` (linkerd's retry budget; Envoy's is the same idea over concurrency).
    Counted in ten buckets that roll with time, so a check costs a few additions, whatever the traffic."""

    BUCKETS = 10

    def __init__(self, config: RetryBudgetConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._bucket_s = config.window_s / self.BUCKETS
        self._calls = [0] * self.BUCKETS
        self._retries = [0] * self.BUCKETS
        self._epoch = 0

    def _roll(self, now: float) -> int:
        epoch = int(now / self._bucket_s)
        gap = epoch - self._epoch
        if gap:
            for i in range(min(gap, self.BUCKETS)):
                j = (self._epoch + 1 + i) % self.BUCKETS
                self._calls[j] = self._retries[j] = 0
            self._epoch = epoch
        return epoch % self.BUCKETS

    def called(self, now: float) -> None:
        self._calls[self._roll(now)] += 1

    def try_retry(self) -> bool:
        i = self._roll(self._clock())
        cfg = self.config
        allowed = max(cfg.min_retries_per_s * cfg.window_s, cfg.ratio * sum(self._calls))
        if sum(self._retries) >= allowed:
            return False
        self._retries[i] += 1
        return True
