"""Counters and histograms for a service, made once per name and reused.

``metrics("linkage_service")`` gives a :class:`Metrics` over the global meter
provider (set by :func:`service_common.setup_telemetry`; a no-op until then) or
over the providers of a given :class:`Telemetry`. Attributes on measurements
are for low-cardinality labels (route, outcome, agency id): never identities,
record refs or anything from a record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from threading import Lock

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import Counter, Histogram, Meter

from ._telemetry import Telemetry

__all__ = ["Metrics", "metrics"]

AttributeValue = str | int | float | bool


class Metrics:
    """Instruments of one meter, created on first use and cached by name."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._lock = Lock()

    def counter(self, name: str, *, unit: str = "1", description: str = "") -> Counter:
        """The monotonic counter ``name`` (``.add(n, attributes)``)."""
        with self._lock:
            if name not in self._counters:
                self._counters[name] = self.meter.create_counter(
                    name, unit=unit, description=description
                )
            return self._counters[name]

    def histogram(self, name: str, *, unit: str = "s", description: str = "") -> Histogram:
        """The histogram ``name`` (``.record(value, attributes)``); seconds by default."""
        with self._lock:
            if name not in self._histograms:
                self._histograms[name] = self.meter.create_histogram(
                    name, unit=unit, description=description
                )
            return self._histograms[name]

    @contextmanager
    def timer(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> Iterator[None]:
        """Record the seconds the block took in histogram ``name``.

        A block that raises is recorded too, with ``error.type`` set to the
        exception's class name.
        """
        labels = dict(attributes or {})
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            labels["error.type"] = type(exc).__name__
            raise
        finally:
            self.histogram(name).record(time.perf_counter() - start, labels)


def metrics(scope: str, *, telemetry: Telemetry | None = None) -> Metrics:
    """Instruments for ``scope`` (the service's package name) from ``telemetry`` or globally."""
    provider = otel_metrics.get_meter_provider() if telemetry is None else telemetry.meter_provider
    return Metrics(provider.get_meter(scope))
