"""JSON log lines: whitelisted extras only, trace ids, no tracebacks."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from service_common import BASE_SAFE_FIELDS, JsonFormatter, TraceContextFilter, configure_logging


def _record(msg="done", exc_info=None, **extra):
    record = logging.LogRecord("svc", logging.INFO, __file__, 1, msg, (), exc_info)
    record.__dict__.update(extra)
    return record


def test_core_fields_and_whitelisted_scalars_only():
    line = json.loads(
        JsonFormatter({"records"}, service_name="linkage-service").format(
            _record(records=5, status="ok", full_name="Alice", path=["not", "scalar"])
        )
    )
    assert line.pop("time")
    assert line == {
        "level": "INFO",
        "logger": "svc",
        "message": "done",
        "records": 5,
        "service": "linkage-service",
        "status": "ok",
    }


def test_extra_cannot_overwrite_core_fields_even_if_whitelisted():
    formatter = JsonFormatter({"message", "trace_id", "level"})
    line = json.loads(formatter.format(_record(message_="x", trace_id="forged", level="DEBUG")))
    assert line["level"] == "INFO" and "trace_id" not in line


def test_exceptions_give_their_type_not_their_message_or_traceback():
    try:
        raise ValueError("date of birth 2001-01-01 is not valid")
    except ValueError:
        import sys

        record = _record("rejected", exc_info=sys.exc_info())
    text = JsonFormatter().format(record)
    assert json.loads(text)["error_type"] == "ValueError"
    assert "2001" not in text and "Traceback" not in text


def test_trace_ids_inside_a_span_and_none_outside():
    tracer = TracerProvider().get_tracer("t")
    formatter = JsonFormatter()
    assert "trace_id" not in json.loads(formatter.format(_record()))
    with tracer.start_as_current_span("s") as span:
        line = json.loads(formatter.format(_record()))
    ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")


def test_the_filter_keeps_ids_of_where_the_record_was_logged():
    # a QueueHandler formats later, outside the span: the stamp must win
    tracer = TracerProvider().get_tracer("t")
    record = _record()
    with tracer.start_as_current_span("s") as span:
        TraceContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    outside = _record()
    TraceContextFilter().filter(outside)
    assert "trace_id" not in json.loads(JsonFormatter().format(outside))


@pytest.fixture
def logger_name():
    name = "tests.service_common.configured"
    yield name
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.propagate = True


def test_configure_logging_replaces_handlers_and_stops_propagation(logger_name, caplog):
    stream = io.StringIO()
    configure_logging([logger_name], stream=stream, level=logging.DEBUG)
    logging.getLogger(logger_name + ".child").debug("hello", extra={"count": 2, "nhs": "943"})
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["message"] == "hello" and line["count"] == 2 and "nhs" not in line
    assert logging.getLogger(logger_name).propagate is False
    assert caplog.records == []


def test_base_fields_hold_no_identity_like_names():
    assert not BASE_SAFE_FIELDS & {"name", "dob", "address", "postcode", "nhs_number", "identity"}
