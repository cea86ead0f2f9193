"""Checking a chunk's lines in worker processes finds exactly what one thread would.

The same extract fed to a receiver with a :class:`VerifyPool` and to one without
must stage the same records in the same order, and a bad extract must be refused
with the same error (type, words, line, field), wherever the bad line falls
among the parts the workers take.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from linkage_service._api import verify_workers
from linkage_service._config import Settings
from linkage_service._errors import IngestError
from linkage_service._ingest import ExtractReceiver, VerifyPool, _Pending
from linkage_service._service import LinkageService

from ._factories import FP, SCHEMA, build_extract, make_record, record_line

SPLIT = 4000  # bytes: a few records a part, so small extracts take several parts


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifyPool]:
    where = tmp_path_factory.mktemp("verify")
    workers = VerifyPool(2, where)
    yield workers
    workers.close()
    assert list(where.iterdir()) == []  # each part's files went as they were read


def _receive(
    svc: LinkageService,
    body: bytes,
    pool: VerifyPool | None,
    chunk: int,
    max_records: int | None = None,
) -> list[Any] | tuple[str, str, int | None, str | None]:
    """The staged records, or the error (type, words, line, field) refusing ``body``."""
    receiver = ExtractReceiver(
        agency_id="school",
        engine=svc.sql,
        schemas={FP: SCHEMA},
        max_body_bytes=1 << 30,
        max_line_bytes=64 * 1024,
        max_records=max_records,
        verify_pool=pool,
        split_bytes=SPLIT,
    )
    try:
        for i in range(0, len(body), chunk):
            receiver.feed(body[i : i + chunk])
        return list(receiver.finish().records())
    except IngestError as exc:
        return (type(exc).__name__, str(exc), exc.line, exc.field)
    finally:
        receiver.close()


@pytest.mark.parametrize("chunk", [997, 20_000, 1 << 30])
def test_the_same_records_are_staged_in_the_same_order(make_service, school, rng, pool, chunk):
    svc = make_service()
    body = build_extract(school, [make_record(rng) for _ in range(120)])
    alone = _receive(svc, body, None, chunk)
    assert isinstance(alone, list) and len(alone) == 120
    assert _receive(svc, body, pool, chunk) == alone


def _bad(rng: Any, kind: str, at: int, n: int = 60) -> list[Any]:
    """``n`` records with a fault of ``kind`` at record ``at`` (line ``at + 2``)."""
    recs: list[Any] = [make_record(rng) for _ in range(n)]
    if kind == "json":
        recs[at] = b'{"record_ref": "oops\n'
    elif kind == "clk":
        recs[at] = make_record(rng, clk=base64.b64encode(rng.randbytes(64)).decode())
    elif kind == "sealed":
        recs[at] = make_record(rng, sealed_identity=base64.b64encode(b"\x01" * 100).decode())
    elif kind == "extra":
        recs[at] = make_record(rng, name="never")
    elif kind == "duplicate":
        recs[at] = make_record(rng, ref=recs[at // 3]["record_ref"])
    elif kind == "duplicate-and-clk":  # the duplicate is met first on its line
        recs[at] = make_record(
            rng,
            ref=recs[0]["record_ref"],
            clk=base64.b64encode(rng.randbytes(64)).decode(),
        )
    elif kind == "two":  # two bad lines: the earlier one is named
        recs[at] = make_record(rng, clk=base64.b64encode(rng.randbytes(64)).decode())
        recs[min(at + 25, n - 1)] = b"not json\n"
    return recs


@pytest.mark.parametrize(
    "kind", ["json", "clk", "sealed", "extra", "duplicate", "duplicate-and-clk", "two"]
)
@pytest.mark.parametrize("at", [1, 17, 31, 45, 59])
def test_a_bad_line_is_refused_with_the_same_error(make_service, school, rng, pool, kind, at):
    svc = make_service()
    body = build_extract(school, _bad(rng, kind, at))
    alone = _receive(svc, body, None, 50_000)
    assert isinstance(alone, tuple), kind
    assert _receive(svc, body, pool, 50_000) == alone


@pytest.mark.parametrize("limit", [5, 30, 41, 44, 50, 59])
@pytest.mark.parametrize("bad", [None, 20, 40, 50])
def test_the_record_limit_falls_where_one_thread_would_find_it(
    make_service, school, rng, pool, limit, bad
):
    svc = make_service()
    recs: list[Any] = [make_record(rng) for _ in range(60)]
    if bad is not None:
        recs[bad] = b"not json\n"
    body = build_extract(school, recs)
    alone = _receive(svc, body, None, 50_000, max_records=limit)
    assert isinstance(alone, tuple) and alone[0] in ("TooLarge", "IngestError")
    assert _receive(svc, body, pool, 50_000, max_records=limit) == alone


def test_a_failed_or_dead_worker_costs_time_not_a_check(
    make_service, school, rng, caplog, monkeypatch, tmp_path
):
    svc = make_service()
    good = build_extract(school, [make_record(rng) for _ in range(40)])
    bad = build_extract(school, _bad(rng, "clk", 33))
    alone = [_receive(svc, body, None, 50_000) for body in (good, bad)]
    handed: list[_Pending] = []

    # a worker whose check fails for a reason other than the lines (here: no shape)
    failing = VerifyPool(1, tmp_path)
    submit = failing.submit

    def without_shape(data: bytes, first: int, _shape: Any, date: Any) -> _Pending | None:
        handed.append(submit(data, first, None, date))  # type: ignore[arg-type]
        return handed[-1]

    monkeypatch.setattr(failing, "submit", without_shape)
    with caplog.at_level(logging.WARNING, logger="linkage_service.ingest"):
        assert [_receive(svc, body, failing, 50_000) for body in (good, bad)] == alone
    assert "verify worker failed; checking its lines here: AttributeError" in caplog.text
    failing.close()

    # a worker that dies while it holds a part; the pool starts another for the next
    caplog.clear()
    dying = VerifyPool(1, tmp_path)
    submit_dying = dying.submit
    killed: list[int] = []

    def then_killed(data: bytes, *args: Any) -> _Pending | None:
        pending = submit_dying(data, *args)
        assert pending is not None and pending.worker is not None
        pending.worker.process.kill()
        pending.worker.process.join()
        killed.append(pending.worker.process.pid or 0)
        handed.append(pending)
        return pending

    monkeypatch.setattr(dying, "submit", then_killed)
    with caplog.at_level(logging.WARNING, logger="linkage_service.ingest"):
        assert [_receive(svc, body, dying, 50_000) for body in (good, bad)] == alone
    assert "verify worker failed; checking its lines here: it died" in caplog.text
    assert len(set(killed)) == len(killed) > 1  # a new worker each time
    dying.close()

    # a worker found dead when a part is sent to it
    caplog.clear()
    gone = VerifyPool(1, tmp_path)
    started = gone.submit(b"", 2, None, None)  # type: ignore[arg-type]
    gone.result(started, b"", 2, None, None)  # type: ignore[arg-type]
    (worker,) = gone._idle
    worker.process.kill()
    worker.process.join()
    with caplog.at_level(logging.WARNING, logger="linkage_service.ingest"):
        assert [_receive(svc, body, gone, 50_000) for body in (good, bad)] == alone
    assert "verify worker gone; checking its lines here" in caplog.text
    gone.close()

    assert handed and not any(h.lines.exists() or h.staged.exists() for h in handed)
    # a closed pool takes nothing: the receiver checks every part itself
    closed = VerifyPool(1)
    closed.close()
    assert [_receive(svc, body, closed, 50_000) for body in (good, bad)] == alone


def test_a_worker_that_cannot_start_costs_time_not_a_check(
    make_service, school, rng, caplog, monkeypatch, tmp_path
):
    svc = make_service()
    body = build_extract(school, _bad(rng, "clk", 33))
    alone = _receive(svc, body, None, 50_000)

    def no_process() -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr("linkage_service._ingest._Worker", no_process)
    pool = VerifyPool(1, tmp_path)
    with caplog.at_level(logging.WARNING, logger="linkage_service.ingest"):
        assert _receive(svc, body, pool, 50_000) == alone
    assert "cannot start a verify worker" in caplog.text
    pool.close()


def test_the_service_owns_its_pool_and_settings_size_it(make_service, school, rng, monkeypatch):
    svc = make_service(verify_workers=1)
    assert svc.verify_pool is not None and svc.verify_pool.workers == 1
    line = record_line(make_record(rng))
    body = build_extract(school, [make_record(rng) for _ in range(1 + (1 << 20) // len(line))])
    receiver = svc.receiver("school")
    try:
        receiver.feed(body)  # over DEFAULT_SPLIT_BYTES: checked in parts
        assert len(list(receiver.finish().records())) > 500
    finally:
        receiver.close()
    svc.close()
    assert make_service().verify_pool is None  # the class default: none
    settings = Settings(token_file="t.json")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert verify_workers(settings) == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert verify_workers(settings) == 3
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert verify_workers(settings) == 0
    assert verify_workers(Settings(token_file="t.json", verify_workers=2)) == 2
