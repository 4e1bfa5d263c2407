"""Prometheus metrics. The names are a contract: the Grafana dashboard and the alert rules use them.

Every metric family is written here and only here: the rest of the gateway reports what happened
(``pool_answered``, ``call_attempted`` ...) and this module decides which series that moves.

Per upstream call, OpenTelemetry's GenAI names (``gen_ai_client_*``); per fusion request, ``fusion_*``.
No label takes unbounded values: pools, models and providers come from the operator's config, every
other label from a fixed set. Each app owns its registry (no global state); with several worker
processes (``PROMETHEUS_MULTIPROC_DIR`` set), values go through prometheus_client's multiprocess files
and a scrape of any worker shows them all.
"""

from __future__ import annotations

import math
import os
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.books.usage import Usage

if TYPE_CHECKING:
    from gateway.books.record import FusionMetadata
    from gateway.config.loader import GatewayConfig

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# OpenTelemetry GenAI semantic-convention buckets
DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))  # 0.01 ... 81.92 s
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16 ... 67,108,864
REQUEST_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 13, 21, 34, 55, 89)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60)
RATIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 7.5, 10, 20)
# OpenTelemetry GenAI's advice for time to first chunk (seconds)
FIRST_CHUNK_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

#: the reasons a request is refused before any work, with their status: these series exist from start
#: (any other ``code`` of a refusal still counts, from its first occurrence)
REFUSALS = {
    "invalid_request": 400,
    "invalid_json": 400,
    "too_many_messages": 400,
    "max_tokens_exceeded": 400,
    "cost_limit_exceeded": 400,
    "invalid_api_key": 401,
    "model_not_allowed": 403,
    "model_not_found": 404,
    "request_too_large": 413,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
}
REFUSED_STATUSES = frozenset(REFUSALS.values())
MEMBER_OUTCOMES = ("ok", "error", "timeout", "cancelled")


class InFlight:
    """Counts a request in the in-flight gauge while it is served. A class rather than a generator-based
    context manager: entered for every request, and a generator costs several times as much."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def __enter__(self) -> None:
        self._gauge.inc()

    def __exit__(self, *exc: object) -> None:
        self._gauge.dec()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they only add cardinality
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode the values live in files; collectors must not also sit in a registry
        # that is exposed, or every series would be reported twice.
        self.registry = CollectorRegistry(auto_describe=True)
        #: (family, label values) -> its child: prometheus_client's labels() validates and locks on every
        #: call, and every request touches several series whose label values come from the config
        self._children: dict[tuple[Any, ...], Any] = {}
        reg = None if self.multiprocess else self.registry

        self.call_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of upstream model calls (one per attempt).",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per upstream call.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=reg,
        )
        self.requests = Counter(
            "fusion_requests",
            "Requests by pool (or model, mode=passthrough) and outcome.",
            ["pool", "mode", "outcome"],
            registry=reg,
        )
        self.request_duration = Histogram(
            "fusion_request_duration_seconds",
            "Wall-clock time of whole requests.",
            ["pool", "mode"],
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self.stage_duration = Histogram(
            "fusion_stage_duration_seconds",
            "Time per stage of a fused request.",
            ["pool", "stage"],
            buckets=STAGE_BUCKETS,
            registry=reg,
        )
        self.member_calls = Counter(
            "fusion_member_calls",
            "Pool member calls by outcome.",
            ["pool", "model", "outcome"],
            registry=reg,
        )
        self.cost = Counter(
            "fusion_cost_usd",
            "Spend in USD by pool and role.",
            ["pool", "role"],
            registry=reg,
        )
        self.baseline_latency_ratio = Histogram(
            "fusion_baseline_latency_ratio",
            "Fused latency / baseline latency, per sampled request.",
            ["pool"],
            buckets=RATIO_BUCKETS,
            registry=reg,
        )
        self.baseline_cost_ratio = Histogram(
            "fusion_baseline_cost_ratio",
            "Fused cost / baseline cost, per sampled request.",
            ["pool"],
            buckets=RATIO_BUCKETS,
            registry=reg,
        )
        self.baseline_comparisons = Counter(
            "fusion_baseline_comparisons",
            "Pairwise judge verdicts, fused answer vs baseline (error: the comparison judge failed).",
            ["pool", "result"],
            registry=reg,
        )
        self.baseline_calls = Counter(
            "fusion_baseline_calls",
            "Sampled baseline calls by outcome (ok, error).",
            ["pool", "outcome"],
            registry=reg,
        )
        self.baseline_skips = Counter(
            "fusion_baseline_skipped",
            "Sampled baseline calls not made because background work was full.",
            ["pool"],
            registry=reg,
        )
        self.judge_verdicts = Counter(
            "fusion_judge_verdicts",
            "Judge outcomes.",
            ["pool", "outcome"],
            registry=reg,
        )
        self.cascades = Counter(
            "fusion_cascade_requests",
            "Cascade requests: the first model's answer accepted, or escalated to the pool (and why).",
            ["pool", "outcome", "reason"],
            registry=reg,
        )
        self.winners = Counter(
            "fusion_winner",
            "Which member's answer was returned.",
            ["pool", "model"],
            registry=reg,
        )
        self.quorum_misses = Counter(
            "fusion_quorum_misses",
            "Requests judged with fewer successful members than the quorum.",
            ["pool"],
            registry=reg,
        )
        self.unpriced_calls = Counter(
            "fusion_unpriced_calls",
            "Upstream calls whose model has no price (cost unknown).",
            ["model"],
            registry=reg,
        )
        self.refused_requests = Counter(
            "fusion_refused_requests",
            "Requests refused before any upstream call, by status and reason (the error code).",
            ["status", "reason"],
            registry=reg,
        )
        self.key_cost = Counter(
            "fusion_key_cost_usd",
            "Spend in USD by client key name (what each key's budget is charged).",
            ["key"],
            registry=reg,
        )
        self.key_budget = Gauge(
            "fusion_key_budget_usd_per_day",
            "Each client key's daily budget from the config (+Inf: none), for spend-rate alerts.",
            ["key"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.call_first_chunk_seconds = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from the start of a streamed upstream call (its last attempt) to its first chunk with content.",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"],
            buckets=FIRST_CHUNK_BUCKETS,
            registry=reg,
        )
        self.first_chunk_seconds = Histogram(
            "fusion_time_to_first_chunk_seconds",
            "Time from a streamed request's arrival to the first chunk of answer sent to the caller.",
            ["pool", "mode"],
            buckets=FIRST_CHUNK_BUCKETS,
            registry=reg,
        )
        self.inflight = Gauge(
            "fusion_inflight_requests",
            "Requests being served.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        #: ``with metrics.in_flight:`` around each request being served
        self.in_flight = InFlight(self.inflight)
        self.reload_ok = Gauge(
            "fusion_config_last_reload_successful",
            "1 if the last config (re)load succeeded.",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.ledger_written = Counter(
            "fusion_ledger_written",
            "Request records written to the ledger.",
            registry=reg,
        )
        self.ledger_dropped = Counter(
            "fusion_ledger_dropped",
            "Request records dropped because the ledger's queue was full (the database was down or slow).",
            registry=reg,
        )
        self.ledger_write_errors = Counter(
            "fusion_ledger_write_errors",
            "Failed ledger writes (the batch stays queued and is tried again).",
            registry=reg,
        )
        self.ledger_queue = Gauge(
            "fusion_ledger_queue_depth",
            "Request records waiting to be written to the ledger.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.ledger_flush_duration = Histogram(
            "fusion_ledger_flush_duration_seconds",
            "Time to write one batch of records to the ledger.",
            buckets=STAGE_BUCKETS,
            registry=reg,
        )
        self.deployment_calls = Counter(
            "fusion_deployment_calls",
            "Attempts per deployment of a model, by outcome (ok, failure, rate_limited, rejected, cancelled).",
            ["model", "deployment", "outcome"],
            registry=reg,
        )
        self.deployment_ejections = Counter(
            "fusion_deployment_ejections",
            "Times a deployment was taken out of rotation for failing.",
            ["model", "deployment"],
            registry=reg,
        )
        self.ejected_now = Gauge(
            "fusion_deployment_ejected",
            "1 while a deployment is ejected (it returns when traffic finds its time over).",
            ["model", "deployment"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.fallbacks = Counter(
            "fusion_fallbacks",
            "Calls answered (or tried) by a fallback model, by why the previous model could not answer.",
            ["model", "fallback", "reason"],
            registry=reg,
        )
        self.cache_hits = Counter(
            "fusion_cache_hits",
            "Requests answered from the response cache, by model or pool.",
            ["pool"],
            registry=reg,
        )
        self.cache_misses = Counter(
            "fusion_cache_misses",
            "Cacheable requests not found in the response cache, by model or pool.",
            ["pool"],
            registry=reg,
        )
        self.cache_saved = Counter(
            "fusion_cache_saved_usd",
            "What the answers served from the cache cost when they were first made.",
            ["pool"],
            registry=reg,
        )
        self.retries_denied = Counter(
            "fusion_retry_budget_exhausted",
            "Retries and fallbacks not made because the retry budget was spent.",
            registry=reg,
        )
        #: (provider, model) -> its series; keys come from the config, so this stays small
        self._upstream_series: dict[tuple[str, str], UpstreamSeries] = {}
        self.reload_ts = Gauge(
            "fusion_config_last_reload_success_timestamp_seconds",
            "When the config last loaded successfully.",
            registry=reg,
            multiprocess_mode="livemax",
        )

    # ------------------------------------------------------------------ series known from the config

    def declare(self, config: GatewayConfig) -> None:
        """Create at 0 every counter series the config makes possible, so that dashboards and alert
        ratios read 0 rather than "no data" before the first event (Prometheus' own advice), and the
        time-to-first-chunk histograms: a stream is rare enough that a series born at its first
        observation would show no increase, hence no rate, to the dashboard. Called at start and after
        each reload; series of names a reload removed stay at their last value."""
        for reason, status in REFUSALS.items():
            self._child(self.refused_requests, str(status), reason)
        for key in config.auth.keys:
            self._child(self.key_cost, key.name)
            budget = key.budget_usd_per_day
            self._child(self.key_budget, key.name).set(float(budget) if budget is not None else math.inf)
        if not config.auth.keys:
            self._child(self.key_cost, "anonymous")
        for name, model in config.models.items():
            for outcome in ("ok", "error"):
                self._child(self.requests, name, "passthrough", outcome)
            self._child(self.first_chunk_seconds, name, "passthrough")
            self._child(self.cost, name, "member")
            if model.price is None:
                self._child(self.unpriced_calls, name)
        for name, pool in config.pools.items():
            for outcome in ("ok", "degraded", "error"):
                self._child(self.requests, name, pool.mode, outcome)
            self._child(self.first_chunk_seconds, name, pool.mode)
            if pool.mode == "cascade":
                self._child(self.cascades, name, "accepted", "")  # escalations: by reason, from their first
            self._child(self.quorum_misses, name)
            self._child(self.cost, name, "member")
            for member in dict.fromkeys(pool.members):
                for outcome in MEMBER_OUTCOMES:
                    self._child(self.member_calls, name, member, outcome)
                if pool.mode != "merge":
                    self._child(self.winners, name, member)
            if pool.judge is not None:
                self._child(self.cost, name, "judge")
                for outcome in ("picked", "fallback", "error"):
                    self._child(self.judge_verdicts, name, outcome)
            if pool.baseline is not None:
                for role in ("baseline", "comparison"):
                    self._child(self.cost, name, role)
                for outcome in ("ok", "error"):
                    self._child(self.baseline_calls, name, outcome)
                for result in ("fusion", "baseline", "tie", "error"):
                    self._child(self.baseline_comparisons, name, result)
                self._child(self.baseline_skips, name)

    def _child(self, family: Any, *values: str) -> Any:
        key = (family, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*values)
        return child

    # ------------------------------------------------------------------ upstream calls

    def _upstream(self, provider: str, model: str) -> UpstreamSeries:
        """The per-call series of one upstream model, looked up once: every call touches three of them."""
        key = (provider, model)
        series = self._upstream_series.get(key)
        if series is None:
            series = self._upstream_series[key] = UpstreamSeries(self, provider, model)
        return series

    def call_attempted(self, provider: str, model: str, error_type: str, seconds: float) -> None:
        """One attempt of an upstream call ended (``error_type`` empty when it succeeded)."""
        self._upstream(provider, model).duration(error_type).observe(seconds)

    def call_first_chunk(self, provider: str, model: str, seconds: float) -> None:
        """A streamed upstream call sent its first chunk with content ``seconds`` after its attempt began."""
        self._upstream(provider, model).first_chunk.observe(seconds)

    def call_settled(
        self, provider: str, model: str, pool: str, role: str, usage: Usage, cost: Decimal | None, priced: bool
    ) -> None:
        """An upstream call that used tokens: its tokens and its cost."""
        if not priced:
            self._child(self.unpriced_calls, model).inc()
        if cost is not None and cost > 0:
            self._child(self.cost, pool, role).inc(float(cost))
        series = self._upstream(provider, model)
        series.tokens_in.observe(usage.prompt_tokens)
        series.tokens_out.observe(usage.completion_tokens)

    # ------------------------------------------------------------------ deployments

    def deployment_called(self, model: str, deployment: str, outcome: str) -> None:
        self._child(self.deployment_calls, model, deployment, outcome).inc()

    def deployment_ejected(self, model: str, deployment: str) -> None:
        self._child(self.deployment_ejections, model, deployment).inc()
        self._child(self.ejected_now, model, deployment).set(1)

    def deployment_returned(self, model: str, deployment: str) -> None:
        self._child(self.ejected_now, model, deployment).set(0)

    def fallback_taken(self, model: str, fallback: str, reason: str) -> None:
        """``reason``: failure, rate_limited or unavailable (every deployment out of rotation)."""
        self._child(self.fallbacks, model, fallback, reason).inc()

    def cache_hit(self, pool: str, saved: Decimal | None) -> None:
        self._child(self.cache_hits, pool).inc()
        if saved:
            self._child(self.cache_saved, pool).inc(float(saved))

    def cache_missed(self, pool: str) -> None:
        self._child(self.cache_misses, pool).inc()

    def retry_denied(self) -> None:
        self.retries_denied.inc()

    # ------------------------------------------------------------------ requests

    def refused(self, status: int, reason: str | None) -> None:
        """A request was turned away before any work: bad input, key, permission, name, size, rate, budget."""
        if status in REFUSED_STATUSES:
            self._child(self.refused_requests, str(status), reason or "invalid_request").inc()

    def key_spent(self, key: str, cost: Decimal | None) -> None:
        """What a request cost the key that made it (the amount its budget is settled with)."""
        if cost is not None and cost > 0:
            self._child(self.key_cost, key).inc(float(cost))

    def first_chunk_sent(self, pool: str, mode: str, seconds: float) -> None:
        """A streamed answer's first chunk reached the caller ``seconds`` after the request arrived."""
        self._child(self.first_chunk_seconds, pool, mode).observe(seconds)

    def passthrough_answered(self, model: str, ok: bool, seconds: float) -> None:
        self._child(self.requests, model, "passthrough", "ok" if ok else "error").inc()
        if ok:
            self._child(self.request_duration, model, "passthrough").observe(seconds)

    def pool_answered(self, meta: FusionMetadata, *, judge_called: bool, quorum_missed: bool) -> None:
        pool, mode, latency = meta.pool, meta.mode, meta.latency
        self._child(self.requests, pool, mode, "degraded" if meta.degraded else "ok").inc()
        self._child(self.request_duration, pool, mode).observe(latency.total / 1000)
        stage = self.stage_duration
        self._child(stage, pool, "fanout").observe(latency.fanout / 1000)
        if judge_called:
            self._child(stage, pool, "judge").observe(latency.judge / 1000)
        for r in latency.rounds:
            self._child(stage, pool, "debate_round").observe(r / 1000)
        self._child(stage, pool, "gateway").observe(max(0.0, latency.gateway) / 1000)
        for call in (*meta.members, *(c for r in meta.rounds for c in r.members)):
            self._child(self.member_calls, pool, call.model, call.status).inc()
        if meta.judge is not None and meta.judge.status == "ok":
            self._child(self.judge_verdicts, pool, "picked").inc()
        elif meta.judge is not None and meta.judge.status == "fallback":
            self._child(self.judge_verdicts, pool, "fallback").inc()
        elif meta.consensus is not None:
            self._child(self.judge_verdicts, pool, "consensus").inc()
        if meta.winner is not None:
            self._child(self.winners, pool, meta.winner.model).inc()
        if quorum_missed:
            self._child(self.quorum_misses, pool).inc()

    def cascade_decided(self, pool: str, escalated: bool, reason: str | None) -> None:
        """``reason`` is one of a fixed set (see ``fusion_modes.cascade``): bounded."""
        self._child(self.cascades, pool, "escalated" if escalated else "accepted", reason or "").inc()

    def pool_failed(self, pool: str, mode: str, *, judge_failed: bool, quorum_missed: bool) -> None:
        self._child(self.requests, pool, mode, "error").inc()
        if judge_failed:
            self._child(self.judge_verdicts, pool, "error").inc()
        if quorum_missed:
            self._child(self.quorum_misses, pool).inc()

    # ------------------------------------------------------------------ baseline

    def baseline_skipped(self, pool: str) -> None:
        self._child(self.baseline_skips, pool).inc()

    def baseline_called(self, pool: str, ok: bool) -> None:
        self._child(self.baseline_calls, pool, "ok" if ok else "error").inc()

    def baseline_ratios(self, pool: str, latency: float | None, cost: float | None) -> None:
        if latency is not None:
            self._child(self.baseline_latency_ratio, pool).observe(latency)
        if cost is not None:
            self._child(self.baseline_cost_ratio, pool).observe(cost)

    def baseline_compared(self, pool: str, result: str) -> None:
        """``result``: fusion, baseline, tie, or error (the comparison judge failed)."""
        self._child(self.baseline_comparisons, pool, result).inc()

    # ------------------------------------------------------------------ ledger

    def ledger_flushed(self, records: int, seconds: float) -> None:
        self.ledger_written.inc(records)
        self.ledger_flush_duration.observe(seconds)

    def ledger_write_failed(self) -> None:
        self.ledger_write_errors.inc()

    def ledger_drop(self) -> None:
        self.ledger_dropped.inc()

    def ledger_queued(self, depth: int) -> None:
        self.ledger_queue.set(depth)

    # ------------------------------------------------------------------ config

    def config_loaded(self, when: float) -> None:
        self.reload_ok.set(1)
        self.reload_ts.set(when)

    def config_refused(self) -> None:
        self.reload_ok.set(0)

    def process_exit(self) -> None:
        """A worker is leaving: drop its share of live gauges (in-flight requests) from the files."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return prometheus_client.generate_latest(registry)
        return prometheus_client.generate_latest(self.registry)


class UpstreamSeries:
    """The labelled children of the per-call metrics for one upstream model."""

    __slots__ = ("_duration", "_metrics", "_model", "_provider", "first_chunk", "tokens_in", "tokens_out")

    def __init__(self, metrics: Metrics, provider: str, model: str) -> None:
        self._metrics = metrics
        self._provider = provider
        self._model = model
        self.tokens_in = metrics.token_usage.labels("chat", provider, model, "input")
        self.tokens_out = metrics.token_usage.labels("chat", provider, model, "output")
        self.first_chunk = metrics.call_first_chunk_seconds.labels("chat", provider, model)
        self._duration = {"": metrics.call_duration.labels("chat", provider, model, "")}

    def duration(self, error_type: str) -> Any:
        child = self._duration.get(error_type)
        if child is None:
            child = self._duration[error_type] = self._metrics.call_duration.labels(
                "chat", self._provider, self._model, error_type
            )
        return child
