"""Errors of ``service_common``.

Hierarchy::

    ServiceCommonError
    └── TelemetryConfigError   an exporter or telemetry setting cannot be used

Each service translates these into its own configuration error at its boundary.
"""

from __future__ import annotations

__all__ = ["ServiceCommonError", "TelemetryConfigError"]


class ServiceCommonError(Exception):
    """Base class of every error raised by ``service_common``."""


class TelemetryConfigError(ServiceCommonError):
    """A telemetry setting or ``OTEL_*`` variable names something we cannot use."""
