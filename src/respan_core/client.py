"""The `Respan` client: one tracer provider of its own, its processors and its exporter.

The client never touches the application's global TracerProvider. Spans go to the active
client: the client of the enclosing request, task or workflow span, else the newest client
not shut down. Instrumentations (LiteLLM's, say) are instrumented once, on a provider that
starts each of their spans on the active client's provider, so an LLM call made while a
request of one application is handled is traced by that application's client.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    Span,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from . import gateway
from .batching import ExportQueue
from .scope import ScopeProcessor, current_var

logger = logging.getLogger("respan_core")

DEFAULT_BASE_URL = "https://api.respan.ai/api"
EXIT_TIMEOUT = 5.0  # seconds a process waits at exit for its spans to be exported
_FALSE = {"0", "false", "no", "off"}

_live: list[Respan] = []  # clients not shut down, oldest first
_taps: list[SpanExporter] = []  # where every client also hands its finished spans (tests)


class Respan:
    """Trace LLM calls, workflows and tasks to Respan, or to a local store without a key.

    `api_key` falls back to `RESPAN_API_KEY`, `base_url` to `RESPAN_BASE_URL`. Without a key,
    spans are kept in a local SQLite file (`local_store`, else `RESPAN_LOCAL_STORE`, else
    `~/.respan/traces.sqlite3`) that `respan traces` prints.

    `customer_identifier`, `thread_identifier`, `metadata` and `environment` are defaults for
    every span: the outermost scope under any `propagate_attributes`.

    `mode` chooses the setup: "tracing" (the default) traces LLM calls; "gateway" sends them
    through the Respan gateway, with the current scope as Respan parameters, and exports no
    traces; "both" does both. `gateway_params` are defaults for every gateway call
    (`{"fallback_models": ["gpt-4.1-mini"]}`). See `respan_core.gateway`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        instrumentations: Sequence[Any] = (),
        customer_identifier: str | None = None,
        thread_identifier: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        environment: str | None = None,
        *,
        local_store: str | None = None,
        trace_content: bool | None = None,
        service_name: str | None = None,
        exporter: SpanExporter | None = None,
        otlp_endpoint: str | None = None,
        mode: str = "tracing",
        gateway_params: Mapping[str, Any] | None = None,
    ):
        self.api_key = api_key or os.environ.get("RESPAN_API_KEY") or None
        self.base_url = (base_url or os.environ.get("RESPAN_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        if trace_content is None:
            switch = os.environ.get("RESPAN_TRACE_CONTENT") or os.environ.get(
                "TRACELOOP_TRACE_CONTENT", "true"
            )
            trace_content = switch.strip().lower() not in _FALSE
        self.trace_content = trace_content
        self.local_store = None
        self.export_queues: list[ExportQueue] = []
        self.mode = _checked_mode(mode, self.api_key)
        self.gateway_params = dict(gateway_params or {})

        defaults = {
            "customer_identifier": customer_identifier,
            "thread_identifier": thread_identifier,
            "metadata": dict(metadata or {}),
            "environment": environment,
        }
        resource = Resource.create({"service.name": service_name or "respan-app"})
        # Always on: an incoming traceparent's "not sampled" flag (which any HTTP client can
        # send) must not switch off tracing of the application's own LLM calls.
        self.defaults = {key: value for key, value in defaults.items() if value}
        if self.mode != gateway.GATEWAY:  # the gateway logs the calls itself: no traces
            exporters = [exporter] if exporter else self._exporters(local_store, otlp_endpoint)
            # A queue each: a slow destination holds up no other.
            self.export_queues = [ExportQueue(one) for one in exporters]
        self.tracer_provider = TracerProvider(
            resource=resource,
            sampler=ALWAYS_ON,
            shutdown_on_exit=False,
            active_span_processor=_ClientProcessor(
                ScopeProcessor(self.defaults), self.export_queues
            ),
        )
        self.tracer = self.tracer_provider.get_tracer("respan_core")
        self._tracers: dict[tuple, trace.Tracer] = {}

        _live.append(self)
        atexit.register(self.shutdown, EXIT_TIMEOUT)
        if self.mode != gateway.TRACING:
            gateway.route_when_imported()  # before tracing wraps LiteLLM: see gateway.py
        for instrumentor in instrumentations:
            self.instrument(instrumentor)

    def _exporters(self, local_store: str | None, otlp_endpoint: str | None) -> list[SpanExporter]:
        """Respan's endpoint with an API key, an OTLP endpoint if one is set (both at once is
        fine), and the local store when there is neither."""
        from . import otlp

        exporters: list[SpanExporter] = []
        if self.api_key:
            from .export import RespanExporter

            exporters.append(
                RespanExporter(self.traces_endpoint, self.api_key, self.trace_content)
            )
        if otlp_endpoint or otlp.endpoint_from_environment():
            exporters.append(otlp.otlp_exporter(otlp_endpoint, self.trace_content))
        if not exporters:
            from .local_store import LocalStoreExporter, default_path

            self.local_store = local_store or default_path()
            exporters.append(LocalStoreExporter(self.local_store, self.trace_content))
        return exporters

    @property
    def traces_endpoint(self) -> str:
        if self.base_url.endswith("/v2/traces"):
            return self.base_url
        return f"{self.base_url}/v2/traces"

    def instrument(self, instrumentor: Any) -> None:
        """Instrument an OpenTelemetry instrumentor so that its spans go to the active client.

        Instrumentors are process-wide: one already instrumented (by an earlier client, or
        by the application for its own provider) is left as it is.
        """
        if getattr(instrumentor, "is_instrumented_by_opentelemetry", False):
            logger.debug("%s is already instrumented", type(instrumentor).__name__)
            return
        instrumentor.instrument(tracer_provider=_routing_provider)

    def instrument_litellm(self) -> None:
        """Trace LiteLLM calls, instrumenting LiteLLM when (and only if) it is imported."""
        from .litellm import instrument_when_imported

        instrument_when_imported(self)

    def flush(self, timeout: float = 30.0) -> bool:
        """Export every finished span now; True when all went within `timeout` seconds."""
        return self.tracer_provider.force_flush(int(timeout * 1000))

    def shutdown(self, timeout: float = 30.0) -> None:
        """Export what is pending within `timeout` seconds, then stop; later spans are lost.

        It runs by itself at process exit, within EXIT_TIMEOUT seconds.
        """
        if self in _live:
            _live.remove(self)
        atexit.unregister(self.shutdown)
        deadline = time.monotonic() + timeout
        for queue in self.export_queues:
            queue.shutdown(int(max(0.0, deadline - time.monotonic()) * 1000))

    def _tracer_for(self, key: tuple) -> trace.Tracer:
        if key not in self._tracers:
            self._tracers[key] = self.tracer_provider.get_tracer(*key)
        return self._tracers[key]


@contextlib.contextmanager
def tap(exporter: SpanExporter) -> Iterator[SpanExporter]:
    """Hand `exporter` every span any client finishes inside the block, as it finishes,
    instead of exporting it: spans a test makes never reach Respan or the local store."""
    _taps.append(exporter)
    try:
        yield exporter
    finally:
        _taps.remove(exporter)


class _ClientProcessor(SynchronousMultiSpanProcessor):
    """All a client does with its spans, as its provider's own processor, so that each span
    costs one call as it starts and one as it ends: the scope is stamped on it as it starts;
    when it ends it goes to the tests' taps if a test is capturing spans, else to the export
    queues. Processors added to the provider (`add_span_processor`) see each span after that.
    """

    def __init__(self, scope: ScopeProcessor, queues: Sequence[ExportQueue]):
        super().__init__()
        self._scope = scope
        self._queues = tuple(queues)
        self.on_start = scope.on_start  # while no processor is added: one call less a span

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.on_start = self._start_in_each

    def _start_in_each(self, span: Span, parent_context: Context | None = None) -> None:
        self._scope.on_start(span, parent_context)
        super().on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if _taps:  # a test is capturing spans: they go there and to no queue
            for exporter in list(_taps):
                exporter.export([span])
        else:
            for queue in self._queues:
                queue.on_end(span)
        if self._span_processors:
            super().on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        flushed = True
        for queue in self._queues:
            remaining = max(0, int((deadline - time.monotonic()) * 1000))
            flushed = queue.force_flush(remaining) and flushed
        remaining = max(0, int((deadline - time.monotonic()) * 1000))
        return super().force_flush(remaining) and flushed

    def shutdown(self) -> None:
        for queue in self._queues:
            queue.shutdown()
        super().shutdown()


def _checked_mode(mode: str, api_key: str | None) -> str:
    if mode not in gateway.MODES:
        raise ValueError(f"mode must be one of {', '.join(gateway.MODES)}; got {mode!r}.")
    if mode != gateway.TRACING and not api_key:
        raise ValueError(
            f"mode {mode!r} sends LLM calls through the Respan gateway with your Respan API "
            "key, and no key is set: pass api_key= or set the RESPAN_API_KEY variable."
        )
    return mode


def active() -> Respan | None:
    """The client of the enclosing entity span, else the newest client not shut down."""
    return current_var.get().client or (_live[-1] if _live else None)


def trace_content() -> bool:
    client = active()
    return client.trace_content if client is not None else False


def flush(timeout: float = 30.0) -> bool:
    """Flush the active client; True when there is nothing left to export."""
    client = active()
    return client.flush(timeout) if client is not None else True


class _RoutingTracer(trace.Tracer):
    """Starts each span on the tracer of the client active at that moment."""

    def __init__(self, key: tuple):
        self._key = key

    def _target(self) -> trace.Tracer:
        client = active()
        return client._tracer_for(self._key) if client is not None else trace.NoOpTracer()

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._target().start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._target().start_as_current_span(*args, **kwargs)


class _RoutingTracerProvider(trace.TracerProvider):
    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        key = (instrumenting_module_name, instrumenting_library_version, schema_url)
        return _RoutingTracer(key)


_routing_provider = _RoutingTracerProvider()
