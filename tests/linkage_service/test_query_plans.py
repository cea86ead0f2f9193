"""Reads by key never scan the records table (statistics kept current by apply).

Every statement the store runs for the read routes (persons, households, a
record's links, id resolution, the review queue, export pages), for a refresh's
apply (records by agency and ref, active or retired) and for a family's sealed
identities is captured and explained on the database itself: SQLite's ``EXPLAIN
QUERY PLAN`` must search ``records`` by a key index, never ``SCAN`` it (through
an index or not); PostgreSQL's ``EXPLAIN`` (with sequential scans priced out,
so a plan with no usable index still shows one) must have no ``Seq Scan on
records``. The partial indexes on ``(agency_id, record_ref)`` serve only a
query whose condition SQLAlchemy writes as the index's (migration 0010).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from linkage_service import _store as store
from linkage_service.programme import _store as pstore

from ._factories import build_extract, make_record
from .conftest import ingest


@contextmanager
def _captured(
    engine: sa.Engine, kinds: tuple[str, ...] = ("SELECT",)
) -> Iterator[list[tuple[str, Any]]]:
    """The statements run on ``engine`` that start with one of ``kinds``, with their
    parameters (an executemany's first set)."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(kinds) and (params or not many):
            seen.append((statement, params[0] if many else params))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)


def _bad_steps(engine: sa.Engine, statement: str, params: Any, table: str = "records") -> list[str]:
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        if engine.dialect.name == "postgresql":
            cur.execute("SET enable_seqscan = off")
            cur.execute("EXPLAIN " + statement, params)
            lines = [str(r[0]) for r in cur.fetchall()]
            return [x for x in lines if f"Seq Scan on {table}" in x]
        cur.execute("EXPLAIN QUERY PLAN " + statement, params)
        lines = [str(r[-1]) for r in cur.fetchall()]
        return [x for x in lines if f"SCAN {table}" in x]


def _reads(svc: Any, school_refs: list[str]) -> list[Callable[[], Any]]:
    sql = svc.sql
    with sql.connect() as conn:
        person = conn.execute(sa.select(store.record_person.c.person_id).limit(1)).scalar_one()
        household = conn.execute(
            sa.select(store.person_household.c.household_id).limit(1)
        ).scalar_one()
    return [
        lambda: store.get_person(sql, person),
        lambda: store.list_persons(sql, None, 100),
        lambda: store.list_persons(sql, person, 100),
        lambda: store.get_household(sql, household),
        lambda: store.list_households(sql, None, 100),
        lambda: store.record_links(sql, "school", school_refs[0]),
        lambda: store.list_review(sql, 0, 50),
        lambda: store.export_persons_page(sql, None, 100),
        lambda: store.export_households_page(sql, None, 100),
        lambda: store.export_pairs_page(sql, "links", None, 100),
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'plans.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def _two_agencies(
    svc: Any, school: Any, police: Any, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """1,500 records of the school's and 1,500 of the police's, ingested."""
    recs = [make_record(rng) for _ in range(1500)]
    ingest(svc, build_extract(school, recs))
    other = [make_record(rng) for _ in range(1500)]
    ingest(svc, build_extract(police, other, extract_type="police"), "police")
    return recs, other


def test_no_read_route_query_scans_the_records_table(make_service, school, police, database):
    svc = make_service(database)
    recs, other = _two_agencies(svc, school, police, random.Random(11))
    # some of the police's retired by a refresh: active is not selective
    ingest(svc, build_extract(police, other[:300], extract_type="police"), "police")
    refs = [r["record_ref"] for r in recs]
    checked = 0
    for read in _reads(svc, refs):
        with _captured(svc.sql) as seen:
            read()
        for statement, params in seen:
            if "records" not in statement:
                continue
            checked += 1
            assert _bad_steps(svc.sql, statement, params) == [], statement
    assert checked >= 8  # the records table was read and each read explained


def test_a_refresh_and_a_familys_sealed_identities_search_records_by_key(
    make_service, school, police, database
):
    svc = make_service(database)
    rng = random.Random(12)
    recs, other = _two_agencies(svc, school, police, rng)
    refreshed = [make_record(rng) for _ in range(20)] + other[:300]
    with _captured(svc.sql, ("SELECT", "UPDATE RECORDS")) as seen:
        # a refresh: 1,200 records retired, 20 new, 300 kept; then 1,200 of them come back
        ingest(svc, build_extract(police, refreshed, extract_type="police"), "police")
        ingest(svc, build_extract(police, other, extract_type="police"), "police")
        refs = [("police", r["record_ref"]) for r in other[:5]]
        refs.append(("school", recs[0]["record_ref"]))
        with svc.sql.connect() as conn:
            found = pstore.sealed_blobs(conn, refs)
    assert set(found) == set(refs)
    keyed = [
        (statement, params)
        for statement, params in seen
        if "record_ref" in statement and "FROM records" in statement
    ]
    assert len(keyed) >= 3  # the apply's reads by ref and the sealed identities'
    # the kept records' update (store.keep_records) finds each record by its id
    kept = [(statement, params) for statement, params in seen if "sealed_identity =" in statement]
    assert kept
    for statement, params in keyed + kept:
        assert _bad_steps(svc.sql, statement, params) == [], statement


@pytest.mark.parametrize("table", [store.links, store.review], ids=["links", "review"])
def test_deleting_pairs_finds_each_pair_by_its_key(database, table):
    """``store.delete_pairs`` (a pair rescored into the other table, or rewritten) never
    scans a pair table; on SQLite a row value ``IN (VALUES ...)`` would."""
    sql = store.open_engine(database)
    try:
        columns = ("record_a", "record_b", "score", "evidence", "run_id")
        if table is store.review:
            columns += ("uncertainty",)
        rows = [
            (a, a + 1, 0.9, "{}", 1) + ((0.4,) if table is store.review else ())
            for a in range(1, 3000)
        ]
        with sql.begin() as conn:
            store.bulk_insert(conn, table, columns, rows)
            store.analyze(conn, [table])
        with _captured(sql, ("DELETE",)) as seen, sql.begin() as conn:
            store.delete_pairs(conn, table, [(a, a + 1) for a in range(1, 1200, 2)])
        assert seen
        for statement, params in seen:
            assert _bad_steps(sql, statement, params, table.name) == [], statement
    finally:
        sql.dispose()
