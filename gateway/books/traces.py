"""OpenTelemetry traces: one span per request, a child per upstream call and per debate round.

Off by default. ``tracing: {otlp_endpoint, sample_ratio}`` in the config turns it on, and only then is
the OpenTelemetry SDK imported (the optional extra ``tracing``). With it off the gateway holds no
:class:`Tracing` and each place that would trace checks one ``if``.

Names and attributes follow OpenTelemetry's GenAI semantic conventions: a request is a ``SERVER`` span
and each upstream call a ``CLIENT`` span named ``chat {model}``, with ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model`` and ``gen_ai.usage.input_tokens`` /
``gen_ai.usage.output_tokens``; failures carry ``error.type``. What the conventions do not name is
under ``fusion.*``: pool, mode, winner, cost, the role of a call (member, judge, baseline, comparison,
passthrough), its member index and debate round.

A caller's W3C ``traceparent`` (and ``tracestate``) make the request span a child of the caller's
span; each upstream call sends its own ``traceparent``, so an upstream that traces joins the same trace.
The tracer provider belongs to the gateway that made it (OpenTelemetry's global provider is left alone).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gateway.books.calls import CallRecord
from gateway.config.schema import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.trace import Span

MISSING = (
    "tracing is configured (tracing.otlp_endpoint) but the OpenTelemetry packages are not installed: "
    "pip install 'fusion-gateway[tracing]'"
)
TRACER = "fusion_gateway"

#: request-line fields that become request-span attributes, under these names
_REQUEST_ATTRIBUTES = {
    "request_id": "fusion.request_id",
    "key": "fusion.key",
    "pool": "fusion.pool",
    "mode": "fusion.mode",
    "winner": "fusion.winner",
    "degraded": "fusion.degraded",
    "judge": "fusion.judge.status",
    "rounds": "fusion.rounds",
    "stream": "fusion.stream",
    "tokens_in": "gen_ai.usage.input_tokens",
    "tokens_out": "gen_ai.usage.output_tokens",
    "error": "error.type",
}
#: request parameters recorded on call spans (GenAI ``gen_ai.request.*``)
_REQUEST_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
}


class Tracing:
    """One gateway's tracer: its provider, sampler, exporter and the W3C propagator."""

    def __init__(self, config: TracingConfig, service_version: str = "") -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as exc:
            raise ImportError(MISSING) from exc

        resource = Resource.create({"service.name": config.service_name, "service.version": service_version})
        # A caller's sampling decision stands; new traces are kept at the configured ratio.
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
        self._provider = TracerProvider(resource=resource, sampler=sampler)
        # Spans are exported from a background thread, in batches: the request path only queues them.
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint)))
        self._tracer = self._provider.get_tracer(TRACER, service_version)
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace

    # ------------------------------------------------------------------ spans

    @contextmanager
    def request(self, carrier: Mapping[str, str], method: str, path: str) -> Iterator[Span]:
        """The request's span, current while the request runs; ``carrier`` holds the caller's
        ``traceparent`` / ``tracestate`` headers, if any."""
        parent = self._propagator.extract(carrier) if carrier else None
        attributes = {"gen_ai.operation.name": "chat", "http.request.method": method, "url.path": path}
        with self._tracer.start_as_current_span(
            "chat", context=parent, kind=self._trace.SpanKind.SERVER, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            yield span

    def request_done(self, span: Span, model: str | None, status: int, cost: Any, fields: Mapping[str, Any]) -> None:
        """What the request came to: its status, cost and the fusion facts of its log line."""
        if model is not None:
            span.update_name(f"chat {model}")
            span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("http.response.status_code", status)
        if cost is not None:
            span.set_attribute("fusion.cost_usd", float(cost))
        for field, name in _REQUEST_ATTRIBUTES.items():
            value = fields.get(field)
            if value is not None:
                span.set_attribute(name, value)
        if status >= 500:
            span.set_status(self._trace.StatusCode.ERROR)

    @staticmethod
    def trace_id(span: Span) -> str:
        return format(span.get_span_context().trace_id, "032x")

    @contextmanager
    def call(
        self, record: CallRecord, provider: str, upstream: str, body: Mapping[str, Any]
    ) -> Iterator[dict[str, str]]:
        """One upstream call's span, current while it runs; yields the ``traceparent`` header to send.
        Usage, cost and outcome are read from ``record`` when the call is over."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": upstream,
            "fusion.model": record.model,
            "fusion.role": record.role,
            "fusion.pool": record.pool,
        }
        if record.member is not None:
            attributes["fusion.member"] = record.member
            attributes["fusion.round"] = record.round
        for param, name in _REQUEST_PARAMS.items():
            value = body.get(param)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[name] = value
        with self._tracer.start_as_current_span(
            f"chat {upstream}", kind=self._trace.SpanKind.CLIENT, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:
            headers: dict[str, str] = {}
            self._propagator.inject(headers)
            try:
                yield headers
            finally:
                self._call_done(span, record)

    def _call_done(self, span: Span, record: CallRecord) -> None:
        span.set_attribute("fusion.status", record.status)
        span.set_attribute("fusion.attempts", record.attempts)
        if record.usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", record.usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", record.usage.completion_tokens)
        if record.cost is not None:
            span.set_attribute("fusion.cost_usd", float(record.cost))
        if record.status in ("error", "timeout"):
            # cancelled is not an error: quorum and grace were met, or the caller left
            span.set_attribute("error.type", record.error_type or record.status)
            span.set_status(self._trace.StatusCode.ERROR)

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any]) -> Iterator[Span]:
        """A step of the gateway's own (a debate round), current while it runs."""
        with self._tracer.start_as_current_span(
            name, kind=self._trace.SpanKind.INTERNAL, attributes=dict(attributes),
            record_exception=False, set_status_on_exception=False,
        ) as span:
            yield span

    # ------------------------------------------------------------------ lifecycle

    def shutdown(self) -> None:
        """Export what is still queued, then stop the exporter's thread."""
        self._provider.shutdown()
