"""Optional OpenTelemetry tracing: ``pip install 'eventctl[otel]'``, configured by the standard ``OTEL_*``
variables.

Tracing is on when ``OTEL_TRACES_EXPORTER`` or an ``OTEL_EXPORTER_OTLP_*ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` is not ``true``). Only then does eventctl import the OpenTelemetry SDK; otherwise,
or without the extra, tracing costs nothing. Each request gets a server span (joining an incoming W3C
``traceparent``); the accepted event stores its ``traceparent``, and every processing attempt is a span in
that same trace.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from eventctl.errors import ConfigError

log = logging.getLogger(__name__)

_SWITCHES = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_requested(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name) for name in _SWITCHES) and environ.get("OTEL_TRACES_EXPORTER") != "none"


class Tracing:
    """Spans for requests and processing attempts. Build it with ``load_tracing``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        exporter_name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
        exporter: SpanExporter
        if exporter_name == "console":
            exporter = ConsoleSpanExporter()
        elif exporter_name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
        else:
            raise ConfigError(f"invalid OTEL_TRACES_EXPORTER={exporter_name!r}: eventctl knows otlp, console and none")
        default_name = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": "eventctl"}
        self._provider = TracerProvider(resource=Resource.create(default_name))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("eventctl")
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace

    @contextlib.contextmanager
    def request_span(self, method: str, path: str, headers: Mapping[str, str]) -> Iterator[Any]:
        """A server span for one request, child of the caller's ``traceparent`` when it sent one."""
        parent = self._propagator.extract(headers)
        with self._tracer.start_as_current_span(
            f"{method} {path}",
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            yield span

    def current_traceparent(self) -> str | None:
        """The W3C ``traceparent`` of the current span, to store with an accepted event."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get("traceparent")

    @contextlib.contextmanager
    def processing_span(self, event_id: str, attempt: int, traceparent: str | None) -> Iterator[Any]:
        """A consumer span for one attempt, in the trace of the request that accepted the event."""
        parent = self._propagator.extract({"traceparent": traceparent}) if traceparent else None
        with self._tracer.start_as_current_span(
            "process event",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={"eventctl.event_id": event_id, "eventctl.attempt": attempt},
        ) as span:
            yield span

    def shutdown(self) -> None:
        """Export what is buffered. Called once at shutdown."""
        self._provider.shutdown()


def load_tracing(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """Tracing if the environment asks for it and the extra is installed; otherwise ``None``."""
    environ = os.environ if environ is None else environ
    if not tracing_requested(environ):
        return None
    try:
        return Tracing(environ)
    except ImportError:
        log.warning("OTEL_* asks for tracing, but OpenTelemetry is not installed: pip install 'eventctl[otel]'")
        return None
