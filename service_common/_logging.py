"""Structured logs: one JSON object per line, with trace ids and whitelisted fields only.

Every line has ``time``, ``level``, ``logger`` and ``message``; ``service`` when
the formatter is given one; ``trace_id`` and ``span_id`` (W3C hex) when the
record was logged inside a span; ``error_type`` (the exception's class name,
never its message or traceback) when logged with ``exc_info``. Context from
``extra=`` is written only for keys on the whitelist and only when the value is
a plain ``str``/``int``/``float``/``bool``, so a careless ``extra=`` can never
put record content or an identity in a log. Tracebacks are dropped for the
same reason: an exception message may quote the input that caused it.

A service lists its own extra keys (``safe_fields``) on top of
:data:`BASE_SAFE_FIELDS`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from typing import TextIO

from opentelemetry import trace

__all__ = ["BASE_SAFE_FIELDS", "JsonFormatter", "TraceContextFilter", "configure_logging"]

BASE_SAFE_FIELDS = frozenset(
    {
        "count",
        "error",
        "method",
        "path",
        "request_id",
        "role",
        "route",
        "run_id",
        "seconds",
        "status",
    }
)
_CORE = ("time", "level", "logger", "message", "service", "trace_id", "span_id", "error_type")
# Attribute names under which TraceContextFilter stamps a record; private so that
# extra= cannot collide with them by accident.
_TRACE_ATTR, _SPAN_ATTR = "_service_common_trace_id", "_service_common_span_id"


def _current_ids() -> tuple[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class TraceContextFilter(logging.Filter):
    """Stamps each record with the current trace and span ids where it is logged.

    Attached to a handler it runs in the logging thread, so the ids are right even
    when the record is formatted later elsewhere (a ``QueueHandler``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the ids (if inside a span); never drops a record."""
        if not hasattr(record, _TRACE_ATTR):
            ids = _current_ids()
            setattr(record, _TRACE_ATTR, ids[0] if ids else None)
            setattr(record, _SPAN_ATTR, ids[1] if ids else None)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON line with trace ids and whitelisted context fields."""

    def __init__(self, safe_fields: Iterable[str] = (), *, service_name: str | None = None):
        super().__init__()
        # Core keys are never taken from extra=, whatever the whitelist says.
        self.safe_fields = (BASE_SAFE_FIELDS | frozenset(safe_fields)) - frozenset(_CORE)
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line for ``record``."""
        body: dict[str, object] = {}
        for key in self.safe_fields:
            value = record.__dict__.get(key)
            if isinstance(value, str | int | float | bool):
                body[key] = value
        body["time"] = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat()
        body["level"] = record.levelname
        body["logger"] = record.name
        body["message"] = record.getMessage()
        if self.service_name:
            body["service"] = self.service_name
        if hasattr(record, _TRACE_ATTR):
            trace_id, span_id = getattr(record, _TRACE_ATTR), getattr(record, _SPAN_ATTR)
            ids = (trace_id, span_id) if trace_id else None
        else:
            ids = _current_ids()
        if ids:
            body["trace_id"], body["span_id"] = ids
        if record.exc_info and record.exc_info[0] is not None:
            body["error_type"] = record.exc_info[0].__name__
        return json.dumps(body, sort_keys=True)


def configure_logging(
    loggers: str | Sequence[str],
    *,
    safe_fields: Iterable[str] = (),
    service_name: str | None = None,
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the named loggers' records to ``stream`` (default stderr) as JSON lines.

    Replaces their handlers and stops propagation to the root logger, so nothing
    else formats the same record as plain text. Returns the handler.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(safe_fields, service_name=service_name))
    handler.addFilter(TraceContextFilter())
    for name in [loggers] if isinstance(loggers, str) else loggers:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return handler
