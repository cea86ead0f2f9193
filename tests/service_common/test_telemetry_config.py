"""Which exporters setup_telemetry chooses: quiet unless configured, unknown names refused."""

from __future__ import annotations

import io

import pytest
from pydantic import ValidationError

from service_common import TelemetryConfigError, TelemetrySettings, setup_telemetry

QUIET = TelemetrySettings(metrics_exporter=("none",))


def _setup(environ, settings=None, stream=None):
    t = setup_telemetry(
        "linkage-service", settings, environ=environ, set_global=False, console_stream=stream
    )
    t.shutdown()
    return t


def test_nothing_configured_exports_nothing():
    t = _setup({})
    assert t.traces_exporter == () and t.metrics_exporter == ()


def test_console_when_the_standard_variable_asks(capsys):
    stream = io.StringIO()
    t = setup_telemetry(
        "linkage-service",
        QUIET,
        environ={"OTEL_TRACES_EXPORTER": "console"},
        set_global=False,
        console_stream=stream,
    )
    with t.tracer("test").start_as_current_span("link"):
        pass
    t.shutdown()
    assert t.traces_exporter == ("console",)
    assert '"name": "link"' in stream.getvalue()
    assert '"service.name": "linkage-service"' in stream.getvalue()
    assert capsys.readouterr() == ("", "")  # only the given stream, never pytest's output


def test_an_otlp_endpoint_alone_selects_otlp():
    t = _setup({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, QUIET)
    assert t.traces_exporter == ("otlp",)


def test_settings_win_over_the_environment():
    settings = TelemetrySettings(traces_exporter=("none",), metrics_exporter=("none",))
    t = _setup({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"}, settings)
    assert t.traces_exporter == () and t.metrics_exporter == ()


def test_comma_list_and_duplicates():
    t = _setup({"OTEL_TRACES_EXPORTER": "otlp, console,otlp"}, QUIET, io.StringIO())
    assert t.traces_exporter == ("otlp", "console")


def test_sdk_disabled_wins():
    t = _setup({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"})
    assert t.traces_exporter == ()


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "jaeger"},
        {"OTEL_METRICS_EXPORTER": "prometheus"},
        {"OTEL_TRACES_EXPORTER": "none,console"},
    ],
    ids=["unknown-trace-exporter", "unknown-metric-exporter", "none-with-another"],
)
def test_unknown_exporters_are_refused(environ):
    with pytest.raises(TelemetryConfigError, match="OTEL_"):
        setup_telemetry("linkage-service", environ=environ, set_global=False)


def test_empty_service_name_is_refused():
    with pytest.raises(TelemetryConfigError, match="service_name"):
        setup_telemetry(" ", environ={}, set_global=False)


def test_settings_reject_a_non_http_endpoint_and_unknown_keys():
    with pytest.raises(ValidationError):
        TelemetrySettings(otlp_endpoint="grpc://collector:4317")
    with pytest.raises(ValidationError):
        TelemetrySettings.model_validate({"exporter": "console"})
