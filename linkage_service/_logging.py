"""The linkage service's structured logs: which context fields it may write.

Formatting (JSON lines with trace ids, whitelisted fields only) is the shared
``service_common`` formatter; this module owns only the linkage service's own
whitelist: ids, counts, durations and error types, never record content.
"""

from __future__ import annotations

import logging

from service_common import configure_logging as _configure

__all__ = ["SAFE_FIELDS", "configure_logging"]

SAFE_FIELDS = frozenset(
    {
        "agency_id",
        "cycle_id",
        "extract_id",
        "export_kind",  # persons, households, families, links, review
        "export_format",  # ndjson, parquet
        "family_id",
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
        "link_seconds",
        "schemas_held",  # schema fingerprint prefix -> agency ids, while several are current
        "upload_id",  # a random session id, bound to the agency that opened it
    }
)


def configure_logging(level: int = logging.INFO) -> logging.Handler:
    """Send ``linkage_service`` (and uvicorn's error) logs to stderr as JSON lines."""
    return _configure(
        ["linkage_service", "uvicorn.error"],
        safe_fields=SAFE_FIELDS,
        service_name="linkage-service",
        level=level,
    )
