"""The metrics helper: cached instruments, timers, telemetry or global providers."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from service_common import metrics, setup_telemetry


@pytest.fixture
def reader_and_telemetry():
    reader = InMemoryMetricReader()
    t = setup_telemetry("unlock-service", environ={}, metric_readers=[reader], set_global=False)
    yield reader, t
    t.shutdown()


def _points(reader):
    data = reader.get_metrics_data()
    out = {}
    for rm in data.resource_metrics:
        assert rm.resource.attributes["service.name"] == "unlock-service"
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out[metric.name] = list(metric.data.data_points)
    return out


def test_counter_and_histogram_are_created_once(reader_and_telemetry):
    reader, t = reader_and_telemetry
    m = metrics("unlock_service", telemetry=t)
    assert m.counter("unlock.requests") is m.counter("unlock.requests")
    m.counter("unlock.requests").add(2, {"decision": "granted"})
    m.counter("unlock.requests").add(1, {"decision": "refused"})
    m.histogram("unlock.seconds").record(0.25)
    points = _points(reader)
    by_decision = {p.attributes["decision"]: p.value for p in points["unlock.requests"]}
    assert by_decision == {"granted": 2, "refused": 1}
    assert points["unlock.seconds"][0].count == 1


def test_timer_records_success_and_failure(reader_and_telemetry):
    reader, t = reader_and_telemetry
    m = metrics("linkage_service", telemetry=t)
    with m.timer("link.seconds", {"stage": "score"}):
        pass
    with pytest.raises(KeyError), m.timer("link.seconds", {"stage": "score"}):
        raise KeyError("x")
    points = _points(reader)["link.seconds"]
    assert sorted((p.attributes.get("error.type", ""), p.count) for p in points) == [
        ("", 1),
        ("KeyError", 1),
    ]


def test_without_telemetry_the_global_provider_is_used():
    # before setup_telemetry the global provider is a no-op: measuring must not fail
    m = metrics("linkage_service")
    m.counter("extracts").add(1)
    with m.timer("push.seconds"):
        pass
