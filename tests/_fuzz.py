"""Schemathesis over every route of one in-process app: no answer may be a 5xx.

Each service's ``test_fuzz.py`` hands :func:`fuzz` its app (for the OpenAPI
schema), a ``send`` that delivers one request as a given caller, and the
callers to try: nobody, a forged credential and each valid role. For every
operation schemathesis generates requests that fit the schema and requests
that do not (Hypothesis, derandomised: the same requests on every run, so a
CI failure reproduces), each sent as a caller Hypothesis picks. Any 5xx, or
an exception out of the app, is collected with what was sent; the test fails
naming each one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import requests
import schemathesis
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests._inprocess import PortalTransport

# A request as ``requests`` would send it (what schemathesis serialises a case to).
_REQUEST_KEYS = ("method", "url", "headers", "params", "json", "data", "files", "cookies")

Send = Callable[[str | None, httpx.Request], httpx.Response]
# Integer edges: below zero, zero, the largest a database integer holds, and past it.
EDGES = (-1, 0, 2**31, 2**63 - 1, 2**63, 10**30)


@dataclass(frozen=True)
class ServerError:
    """One request that got a 5xx (or crashed the app)."""

    operation: str
    caller: str | None
    status: int
    url: str
    body: bytes
    answer: str

    def __str__(self) -> str:
        return (
            f"{self.operation} as {self.caller}: {self.status} for {self.url} "
            f"body={self.body[:200]!r} -> {self.answer[:300]}"
        )


@dataclass(frozen=True)
class FuzzRun:
    """What one :func:`fuzz` found: server errors, requests per operation, statuses seen."""

    errors: list[ServerError]
    sent: dict[str, int]
    statuses: Counter[tuple[str | None, int]]

    def succeeded(self, caller: str) -> bool:
        """Whether ``caller`` got at least one 2xx (so its credentials were really valid)."""
        return any(c == caller and 200 <= s < 300 for c, s in self.statuses)

    def report(self, started: float) -> str:
        """A failure message: each 5xx (at most 30), then the totals."""
        lines = [str(e) for e in self.errors[:30]]
        lines.append(
            f"{len(self.errors)} server errors in {sum(self.sent.values())} requests over "
            f"{len(self.sent)} operations in {time.monotonic() - started:.1f}s; statuses by "
            f"caller: {sorted(self.statuses.items(), key=str)}"
        )
        return "\n".join(lines)


def _as_httpx(kwargs: dict[str, Any]) -> httpx.Request:
    prepared = requests.Request(**{k: kwargs[k] for k in _REQUEST_KEYS if k in kwargs}).prepare()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    assert prepared.method is not None and prepared.url is not None
    return httpx.Request(prepared.method, prepared.url, headers=headers, content=body)


def fuzz(
    app: FastAPI,
    send: Send,
    callers: Sequence[str | None],
    *,
    valid: Sequence[str],
    examples: int,
) -> FuzzRun:
    """Fuzz every operation of ``app``'s schema: its 5xx answers and what was sent."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    run = FuzzRun([], {}, Counter())
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        run.sent[label] = 0
        strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
        try:
            strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        except Exception:  # noqa: BLE001 - an operation with nothing to make invalid
            pass
        _fuzz_operation(st.one_of(strategies), label, send, callers, examples, run)
        # Random integers seldom reach the edges a database cares about: every
        # integer parameter also gets each edge value, once as each valid caller.
        raw = app.openapi()["paths"][operation.path][operation.method.lower()]
        for param in raw.get("parameters", []):
            if not _is_integer(param["schema"]) or param["in"] not in ("path", "query"):
                continue
            where = "path_parameters" if param["in"] == "path" else "query"
            for value in EDGES:
                edge = operation.as_strategy(
                    generation_mode=GenerationMode.POSITIVE, **{where: {param["name"]: value}}
                )
                for caller in valid:
                    _fuzz_operation(edge, label, send, [caller], 1, run)
    return run


def operation_count(app: FastAPI) -> int:
    """How many operations ``app``'s schema has (every one must have been fuzzed)."""
    return sum(len(methods) for methods in app.openapi()["paths"].values())


def _is_integer(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "integer":
        return True
    return any(_is_integer(option) for option in schema.get("anyOf", []))


def _fuzz_operation(
    strategy: Any,
    label: str,
    send: Send,
    callers: Sequence[str | None],
    examples: int,
    run: FuzzRun,
) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, caller=st.sampled_from(list(callers)))
    def one(case: Any, caller: str | None) -> None:
        try:
            request = _as_httpx(case.as_transport_kwargs(base_url="http://testserver"))
        except (ValueError, TypeError, UnicodeError, requests.RequestException):
            return  # no HTTP client could send it (a header that is not latin-1, say)
        run.sent[label] += 1
        try:
            response = send(caller, request)
        except Exception as exc:  # noqa: BLE001 - the app crashed: that is the finding
            run.errors.append(
                ServerError(label, caller, 500, str(request.url), request.content, repr(exc))
            )
            return
        run.statuses[(caller, response.status_code)] += 1
        if response.status_code >= 500:
            run.errors.append(
                ServerError(
                    label,
                    caller,
                    response.status_code,
                    str(request.url),
                    request.content,
                    response.text,
                )
            )

    one()


@contextmanager
def running(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` started (its lifespan run) and a client into it."""
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(app.router.lifespan_context(app)):
            transport = PortalTransport(app, portal, raise_app_exceptions=False)
            with httpx.Client(transport=transport, base_url="http://testserver") as client:
                yield client
