"""One trace across two in-process services: traceparent in, traceparent out."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service_common import (
    Telemetry,
    configure_logging,
    instrument_app,
    setup_telemetry,
    traced_async_transport,
    traced_transport,
)

# An agency's push, as its client would send it (W3C trace-context example ids).
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


@pytest.fixture
def telemetry():
    exporter = InMemorySpanExporter()
    t = setup_telemetry("test", environ={}, span_exporters=[exporter], set_global=False)
    t.exporter = exporter  # type: ignore[attr-defined]
    yield t
    t.shutdown()


def _process_boundary(app: FastAPI):
    """Run ``app`` with an empty OTel context, as if in its own process.

    In-process, httpx.ASGITransport runs the app inside the caller's context, and
    the instrumentation would then nest under the caller's active span without
    reading the header at all; this makes the header the only way across.
    """

    async def isolated(scope, receive, send):
        token = otel_context.attach(otel_context.Context())
        try:
            await app(scope, receive, send)
        finally:
            otel_context.detach(token)

    return isolated


def _downstream(telemetry: Telemetry, seen: list[str]) -> FastAPI:
    """Plays the unlock service: records the traceparent it was sent and logs."""
    app = FastAPI()
    log = logging.getLogger("tests.service_common.unlock")

    @app.post("/unlock")
    async def unlock(request: Request) -> dict[str, str]:
        seen.append(request.headers.get("traceparent", ""))
        log.info(
            "unlock decided",
            extra={"status": "granted", "full_name": "Alice Example", "dob": "2001-01-01"},
        )
        return {"decision": "granted"}

    instrument_app(app, "unlock-service", telemetry=telemetry)
    return app


def _upstream(telemetry: Telemetry, downstream: FastAPI, *, traced: bool = True) -> FastAPI:
    """Plays the linkage service: takes an agency push, then calls downstream."""
    app = FastAPI()
    log = logging.getLogger("tests.service_common.linkage")

    @app.post("/extracts")
    async def push() -> dict[str, str]:
        log.info("extract received", extra={"records": 3})
        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=_process_boundary(downstream))
        if traced:
            transport = traced_async_transport(transport, telemetry=telemetry)
        async with httpx.AsyncClient(transport=transport, base_url="http://unlock") as client:
            response = await client.post("/unlock")
        return dict(response.json())

    instrument_app(app, "linkage-service", telemetry=telemetry)
    return app


def _journey(
    telemetry: Telemetry, headers: dict[str, str], *, traced: bool = True
) -> tuple[list[str], list[dict]]:
    seen: list[str] = []
    upstream = _upstream(telemetry, _downstream(telemetry, seen), traced=traced)
    stream = io.StringIO()
    configure_logging("tests.service_common", stream=stream, safe_fields={"records"})

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=_process_boundary(upstream))
        async with httpx.AsyncClient(transport=transport, base_url="http://linkage") as client:
            return await client.post("/extracts", headers=headers)

    try:
        response = asyncio.run(call())
    finally:
        logging.getLogger("tests.service_common").handlers.clear()
    assert response.json() == {"decision": "granted"}
    return seen, [json.loads(line) for line in stream.getvalue().splitlines()]


def _servers(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {
        str(s.attributes["family_linkage.service"]): s
        for s in spans
        if s.kind is SpanKind.SERVER and s.attributes
    }


def test_one_trace_crosses_the_http_call_between_two_services(telemetry):
    seen, _ = _journey(telemetry, {"traceparent": TRACEPARENT})
    spans = telemetry.exporter.get_finished_spans()
    servers = _servers(spans)
    assert set(servers) == {"linkage-service", "unlock-service"}
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    # linkage continued the agency's span ...
    linkage, unlock = servers["linkage-service"], servers["unlock-service"]
    assert linkage.parent is not None and format(linkage.parent.span_id, "016x") == PARENT_SPAN
    # ... its outgoing call is a client span under it, and unlock continued that span
    [client] = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert client.parent is not None and client.parent.span_id == linkage.context.span_id
    assert unlock.parent is not None and unlock.parent.span_id == client.context.span_id
    # the header on the wire named the client span
    [header] = seen
    assert header == f"00-{TRACE_ID}-{format(client.context.span_id, '016x')}-01"


def test_a_request_without_traceparent_starts_a_new_trace_that_still_crosses(telemetry):
    seen, _ = _journey(telemetry, {})
    servers = _servers(telemetry.exporter.get_finished_spans())
    linkage, unlock = servers["linkage-service"], servers["unlock-service"]
    assert linkage.parent is None
    assert unlock.context.trace_id == linkage.context.trace_id
    assert seen[0].split("-")[1] == format(linkage.context.trace_id, "032x")


def test_without_the_traced_transport_the_trace_breaks(telemetry):
    # the control for the test above: the process boundary really is one
    seen, _ = _journey(telemetry, {"traceparent": TRACEPARENT}, traced=False)
    servers = _servers(telemetry.exporter.get_finished_spans())
    assert seen == [""]
    assert format(servers["unlock-service"].context.trace_id, "032x") != TRACE_ID
    assert servers["unlock-service"].parent is None


def test_log_lines_carry_the_trace_and_span_of_their_request(telemetry):
    _, lines = _journey(telemetry, {"traceparent": TRACEPARENT})
    servers = _servers(telemetry.exporter.get_finished_spans())
    by_message = {line["message"]: line for line in lines}
    received, decided = by_message["extract received"], by_message["unlock decided"]
    assert received["trace_id"] == decided["trace_id"] == TRACE_ID
    assert received["span_id"] == format(servers["linkage-service"].context.span_id, "016x")
    assert decided["span_id"] == format(servers["unlock-service"].context.span_id, "016x")
    assert received["records"] == 3 and decided["status"] == "granted"


def test_no_identity_from_extra_reaches_the_log(telemetry):
    _, lines = _journey(telemetry, {"traceparent": TRACEPARENT})
    text = json.dumps(lines)
    assert "Alice" not in text and "2001-01-01" not in text
    assert not any("full_name" in line or "dob" in line for line in lines)


def test_spans_hold_no_request_headers(telemetry):
    _journey(telemetry, {"traceparent": TRACEPARENT, "authorization": "Bearer s3cret-token"})
    for span in telemetry.exporter.get_finished_spans():
        assert "s3cret-token" not in json.dumps(dict(span.attributes or {}))


def test_sync_transport_injects_traceparent(telemetry):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent", ""))
        return httpx.Response(204)

    transport = traced_transport(httpx.MockTransport(handler), telemetry=telemetry)
    with telemetry.tracer("test").start_as_current_span("push") as span:
        with httpx.Client(transport=transport) as client:
            client.get("http://linkage/healthz")
    [header] = seen
    assert header.split("-")[1] == format(span.get_span_context().trace_id, "032x")
    [client_span] = [
        s for s in telemetry.exporter.get_finished_spans() if s.kind is SpanKind.CLIENT
    ]
    assert client_span.parent is not None
    assert client_span.parent.span_id == span.get_span_context().span_id


def test_health_probes_make_no_spans(telemetry):
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    instrument_app(app, "linkage-service", telemetry=telemetry)

    async def call() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            assert (await client.get("http://x/healthz")).status_code == 200

    asyncio.run(call())
    assert telemetry.exporter.get_finished_spans() == ()
