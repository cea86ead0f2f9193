"""Structured logs: one JSON object per line through the standard logging module.

Only whitelisted context fields are written (ids, counts, durations, error
types), so a careless ``extra=`` can never put record content in a log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

__all__ = ["JsonFormatter", "configure_logging"]

SAFE_FIELDS = frozenset(
    {
        "agency_id",
        "extract_id",
        "run_id",
        "records",
        "records_received",
        "records_added",
        "records_kept",
        "records_changed",
        "records_retired",
        "persons_changed",
        "households_changed",
        "links",
        "review",
        "seconds",
        "link_seconds",
        "error",
        "status",
        "method",
        "path",
        "role",
    }
)


class JsonFormatter(logging.Formatter):
    """Formats a record as a JSON line with whitelisted context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line for ``record``."""
        body: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in SAFE_FIELDS:
            value = record.__dict__.get(key)
            if isinstance(value, str | int | float | bool):
                body[key] = value
        return json.dumps(body, sort_keys=True)


def configure_logging(level: int = logging.INFO) -> None:
    """Send ``linkage_service`` logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("linkage_service")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
