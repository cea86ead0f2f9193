"""Observability shared by the services: OpenTelemetry traces and metrics, JSON logs.

A service process calls, once at start-up (its ``serve`` command)::

    telemetry = setup_telemetry("linkage-service")
    configure_logging(["linkage_service", "uvicorn.error"], safe_fields=SAFE_FIELDS,
                      service_name="linkage-service")

its app factory calls ``instrument_app(app, "linkage-service")``, and every
``httpx`` client it makes to another service uses ``traced_transport()``. Nothing
here reads configuration or creates a provider at import time.

``_database`` holds what every service's storage shares: URL handling, SQLite
durability pragmas, alembic upgrades (each service passes its own error types).
``_http`` holds what every HTTP shell shares: the bound on integer parameters,
the request body cap and the OpenAPI schema served to authenticated callers only.

Errors: :class:`ServiceCommonError` is the base of everything raised here
(see ``_errors`` for the hierarchy).
"""

from ._bearer import bearer_caller, require_roles
from ._database import (
    BackgroundCheckpoints,
    create_database_engine,
    migrate_database,
    normalise_database_url,
    open_database,
    redact_url,
)
from ._errors import ServiceCommonError, TelemetryConfigError
from ._http import MAX_SQL_INT, NO_PUBLIC_DOCS, BodyLimit, serve_openapi
from ._logging import BASE_SAFE_FIELDS, JsonFormatter, TraceContextFilter, configure_logging
from ._metrics import Metrics, metrics
from ._periodic import Periodic
from ._settings import load_service_settings
from ._telemetry import (
    Telemetry,
    TelemetrySettings,
    instrument_app,
    setup_telemetry,
    traced_async_transport,
    traced_transport,
)

__all__ = [
    "BASE_SAFE_FIELDS",
    "MAX_SQL_INT",
    "NO_PUBLIC_DOCS",
    "BackgroundCheckpoints",
    "BodyLimit",
    "JsonFormatter",
    "Metrics",
    "Periodic",
    "ServiceCommonError",
    "Telemetry",
    "TelemetryConfigError",
    "TelemetrySettings",
    "TraceContextFilter",
    "bearer_caller",
    "configure_logging",
    "create_database_engine",
    "instrument_app",
    "load_service_settings",
    "metrics",
    "migrate_database",
    "normalise_database_url",
    "open_database",
    "redact_url",
    "require_roles",
    "serve_openapi",
    "setup_telemetry",
    "traced_async_transport",
    "traced_transport",
]
