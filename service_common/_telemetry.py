"""OpenTelemetry set-up shared by the services: providers, exporters, FastAPI and httpx.

One process runs one service and calls :func:`setup_telemetry` once, at start-up
(in its ``serve`` command, never at import time). The app factory calls
:func:`instrument_app`, which reads the W3C ``traceparent`` header of each
request, so a trace started by an agency's push continues through the linkage
service and the unlock service; outgoing calls made through
:func:`traced_transport` / :func:`traced_async_transport` carry it onwards.

Exporters are chosen by configuration only and are quiet by default: nothing is
exported unless a setting or ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``
says ``console`` or ``otlp``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (then
OTLP over HTTP). So tests and CLIs that import a service never print spans. An
unknown exporter name is refused (fail closed) rather than silently dropped.

Spans carry ids, routes, status codes and durations; this module never adds
request bodies, headers other than ``traceparent``/``tracestate``, or query
values to them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import httpx
from fastapi import FastAPI
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    SyncOpenTelemetryTransport,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from pydantic import BaseModel, ConfigDict, Field

from ._errors import TelemetryConfigError

__all__ = [
    "Telemetry",
    "TelemetrySettings",
    "instrument_app",
    "setup_telemetry",
    "traced_async_transport",
    "traced_transport",
]

ExporterName = Literal["none", "console", "otlp"]
_EXPORTERS: tuple[ExporterName, ...] = ("none", "console", "otlp")
# Health probes are polled every few seconds; a span each would drown real traffic.
DEFAULT_EXCLUDED_URLS = "/health,/livez,/readyz"  # regexes; "/health" covers /healthz


class TelemetrySettings(BaseModel):
    """What to export and where; unset fields fall back to the standard ``OTEL_*`` variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # None: $OTEL_TRACES_EXPORTER / $OTEL_METRICS_EXPORTER (comma-separated), else
    # "otlp" when $OTEL_EXPORTER_OTLP_ENDPOINT is set, else "none".
    traces_exporter: tuple[ExporterName, ...] | None = None
    metrics_exporter: tuple[ExporterName, ...] | None = None
    # Base URL of an OTLP/HTTP collector (``/v1/traces`` and ``/v1/metrics`` are
    # appended); None leaves it to $OTEL_EXPORTER_OTLP_ENDPOINT or the exporter default.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    metric_export_interval_seconds: float = Field(default=60.0, gt=0)
    service_version: str | None = None


@dataclass
class Telemetry:
    """The providers of one service process; :meth:`shutdown` flushes and stops them."""

    service_name: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    traces_exporter: tuple[ExporterName, ...]
    metrics_exporter: tuple[ExporterName, ...]
    _closed: bool = field(default=False, repr=False)

    def tracer(self, name: str) -> trace.Tracer:
        """A tracer named after the instrumented module."""
        return self.tracer_provider.get_tracer(name)

    def shutdown(self) -> None:
        """Flush pending spans and metrics, then stop the exporters (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _parse_exporters(value: str, source: str) -> tuple[ExporterName, ...]:
    names: list[ExporterName] = []
    for raw in value.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        for known in _EXPORTERS:
            if name == known:
                names.append(known)
                break
        else:
            raise TelemetryConfigError(
                f"{source}={value!r}: unknown exporter {name!r}, expected one of {_EXPORTERS}"
            )
    return tuple(names)


def _resolve(
    configured: tuple[ExporterName, ...] | None,
    variable: str,
    env: Mapping[str, str],
) -> tuple[ExporterName, ...]:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    if configured is not None:
        chosen = configured
    elif env.get(variable, "").strip():
        chosen = _parse_exporters(env[variable], variable)
    elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        chosen = ("otlp",)
    else:
        chosen = ()
    if "none" in chosen and len(set(chosen)) > 1:
        raise TelemetryConfigError(f"{variable}: 'none' cannot be combined with other exporters")
    return tuple(dict.fromkeys(name for name in chosen if name != "none"))


def _otlp_endpoint(settings: TelemetrySettings, signal: str) -> dict[str, Any]:
    if settings.otlp_endpoint is None:
        return {}  # the exporter reads OTEL_EXPORTER_OTLP[_<SIGNAL>]_ENDPOINT itself
    return {"endpoint": settings.otlp_endpoint.rstrip("/") + f"/v1/{signal}"}


def _span_processors(
    names: Sequence[ExporterName], settings: TelemetrySettings, stream: TextIO
) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    for name in names:
        if name == "console":
            # Synchronous: a developer watching the console sees each span as it ends.
            processors.append(SimpleSpanProcessor(ConsoleSpanExporter(out=stream)))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(
                BatchSpanProcessor(OTLPSpanExporter(**_otlp_endpoint(settings, "traces")))
            )
    return processors


def _metric_readers(
    names: Sequence[ExporterName], settings: TelemetrySettings, stream: TextIO
) -> list[MetricReader]:
    interval = int(settings.metric_export_interval_seconds * 1000)
    readers: list[MetricReader] = []
    for name in names:
        exporter: MetricExporter
        if name == "console":
            exporter = ConsoleMetricExporter(out=stream)
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter(**_otlp_endpoint(settings, "metrics"))
        else:  # pragma: no cover - _resolve drops "none"
            continue
        readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=interval))
    return readers


def setup_telemetry(
    service_name: str,
    settings: TelemetrySettings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    set_global: bool = True,
    console_stream: TextIO | None = None,
) -> Telemetry:
    """Tracer and meter providers for ``service_name`` with the configured exporters.

    ``span_exporters`` and ``metric_readers`` are added to the configured ones
    (tests pass the SDK's in-memory exporter and reader). With ``set_global``
    (the default; call it once per process) the providers become the process's
    global ones, which :func:`instrument_app`, :func:`traced_transport` and
    :func:`service_common.metrics` use when not given providers. The resource's
    ``service.name`` is ``service_name``; ``OTEL_RESOURCE_ATTRIBUTES`` adds to it.
    Console output goes to standard error unless ``console_stream`` is given.
    """
    if not service_name.strip():
        raise TelemetryConfigError("service_name must not be empty")
    settings = settings or TelemetrySettings()
    env = os.environ if environ is None else environ
    traces = _resolve(settings.traces_exporter, "OTEL_TRACES_EXPORTER", env)
    metric_names = _resolve(settings.metrics_exporter, "OTEL_METRICS_EXPORTER", env)
    attributes: dict[str, str] = {SERVICE_NAME: service_name}
    if settings.service_version:
        attributes[SERVICE_VERSION] = settings.service_version
    resource = Resource.create(attributes)
    stream = console_stream or sys.stderr

    tracer_provider = TracerProvider(resource=resource)
    for processor in _span_processors(traces, settings, stream):
        tracer_provider.add_span_processor(processor)
    for exporter in span_exporters:
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    readers = [*_metric_readers(metric_names, settings, stream), *metric_readers]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        otel_metrics.set_meter_provider(meter_provider)
    return Telemetry(service_name, tracer_provider, meter_provider, traces, metric_names)


def instrument_app(
    app: FastAPI,
    service_name: str,
    *,
    telemetry: Telemetry | None = None,
    excluded_urls: str = DEFAULT_EXCLUDED_URLS,
) -> None:
    """Trace every request of ``app``, continuing the caller's W3C ``traceparent``.

    Uses the maintained ``opentelemetry-instrumentation-fastapi`` with
    ``telemetry``'s providers, or the global ones. Each server span gets a
    ``family_linkage.service`` attribute naming the service. No request or
    response headers are captured; the per-chunk ``receive``/``send`` spans are
    left out (a streamed upload would otherwise make thousands).
    """

    def _label(span: trace.Span, scope: dict[str, Any]) -> None:
        if span.is_recording():
            span.set_attribute("family_linkage.service", service_name)

    FastAPIInstrumentor.instrument_app(
        app,
        server_request_hook=_label,
        tracer_provider=None if telemetry is None else telemetry.tracer_provider,
        meter_provider=None if telemetry is None else telemetry.meter_provider,
        excluded_urls=excluded_urls,
        exclude_spans=["receive", "send"],
    )


def traced_transport(
    transport: httpx.BaseTransport | None = None, *, telemetry: Telemetry | None = None
) -> httpx.BaseTransport:
    """Wrap ``transport`` (default: ``httpx.HTTPTransport()``) so each call is a client
    span and carries ``traceparent``: ``httpx.Client(transport=traced_transport())``."""
    return SyncOpenTelemetryTransport(
        transport or httpx.HTTPTransport(),
        tracer_provider=None if telemetry is None else telemetry.tracer_provider,
        meter_provider=None if telemetry is None else telemetry.meter_provider,
    )


def traced_async_transport(
    transport: httpx.AsyncBaseTransport | None = None, *, telemetry: Telemetry | None = None
) -> httpx.AsyncBaseTransport:
    """The :func:`traced_transport` of an ``httpx.AsyncClient``."""
    return AsyncOpenTelemetryTransport(
        transport or httpx.AsyncHTTPTransport(),
        tracer_provider=None if telemetry is None else telemetry.tracer_provider,
        meter_provider=None if telemetry is None else telemetry.meter_provider,
    )
