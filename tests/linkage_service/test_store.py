"""Storage on SQLite and PostgreSQL: migrations match the tables, registry, atomic apply."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from linkage_service import _engine, _service
from linkage_service import _store as store
from linkage_service._errors import ConfigError, EngineError, StorageError
from linkage_service._service import default_engine_factory

from ._factories import FailingEngine, FakeEngine, build_extract, make_record
from .conftest import ingest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def test_migrations_create_exactly_the_declared_tables(db_url):
    engine = store.open_engine(db_url)
    try:
        with engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), store.metadata)
        diff = [
            d for d in diff if not (d[0] == "remove_table" and d[1].name == store.VERSION_TABLE)
        ]
        assert diff == []
        store.migrate(engine)  # idempotent
    finally:
        engine.dispose()


def test_agency_registry(db_url):
    engine = store.open_engine(db_url)
    try:
        a = store.add_agency(engine, "school", b"k" * 32, "1" * 16, ["education", "education"])
        b = store.add_agency(engine, "police", b"p" * 32, "2" * 16, ["police"])
        assert (a.idx, b.idx) == (1, 2) and a.extract_types == ("education",)
        again = store.add_agency(engine, "school", b"n" * 32, "3" * 16, ["education", "health"])
        assert again.idx == 1 and again.key_id == "3" * 16
        assert [x.agency_id for x in store.list_agencies(engine)] == ["school", "police"]
        with pytest.raises(ConfigError, match="at least one"):
            store.add_agency(engine, "x1", b"k" * 32, "1" * 16, [])
    finally:
        engine.dispose()


def test_delete_pairs_deletes_exactly_the_pairs_named(db_url):
    engine = store.open_engine(db_url)
    columns = ("record_a", "record_b", "score", "evidence", "run_id")
    try:
        with engine.begin() as conn:
            held = [(1, 2), (1, 3), (2, 3), (3, 4), (5, 1)]
            store.bulk_insert(conn, store.links, columns, [(a, b, 0.9, "{}", 1) for a, b in held])
            # (2, 1) is not (1, 2): a pair is keyed in the order it is stored; (7, 8) is not held
            store.delete_pairs(conn, store.links, [(1, 3), (3, 4), (2, 1), (7, 8)])
            store.delete_pairs(conn, store.links, [])
            left = conn.execute(sa.select(store.links.c.record_a, store.links.c.record_b)).all()
        assert sorted(tuple(r) for r in left) == [(1, 2), (2, 3), (5, 1)]
    finally:
        engine.dispose()


def _delete_roundtrip(db_url: str, limit: int | None = None) -> None:
    engine = store.open_engine(db_url)
    columns = ("record_a", "record_b", "score", "evidence", "run_id")
    held = [(a, a + d) for a in range(1, 800) for d in (1, 2)]
    named = held[::2][:1001] + [(b, a) for a, b in held[1::2][:202]]  # reversed: not held
    try:
        with engine.begin() as conn:
            store.bulk_insert(conn, store.links, columns, [(a, b, 0.9, "{}", 1) for a, b in held])
            _few_parameters(conn, limit)
            store.delete_pairs(conn, store.links, named)
            left = conn.execute(sa.select(store.links.c.record_a, store.links.c.record_b)).all()
        assert sorted(tuple(r) for r in left) == sorted(set(held) - set(named))
    finally:
        engine.dispose()


def test_apply_supersede_and_rollback(db_url, make_service, school, rng):
    svc = make_service(db_url)
    recs = [make_record(rng) for _ in range(6)]
    ingest(svc, build_extract(school, recs))
    ingest(svc, build_extract(school, recs[:4]))
    stats = store.statistics(svc.sql)
    assert (stats["active_records"], stats["retired_records"], stats["persons"]) == (4, 2, 4)
    assert stats["runs"] == 2


def test_failure_mid_apply_rolls_back_everything(db_url, make_service, school, rng):
    FailingEngine.fail = False
    svc = make_service(db_url, factory=FailingEngine)
    recs = [make_record(rng) for _ in range(5)]
    ingest(svc, build_extract(school, recs))
    before = store.statistics(svc.sql)
    FailingEngine.fail = True
    try:
        with pytest.raises(EngineError, match="previous state is intact"):
            ingest(svc, build_extract(school, recs[:2] + [make_record(rng)]))
    finally:
        FailingEngine.fail = False
    after = store.statistics(svc.sql)
    for key in ("active_records", "retired_records", "persons", "households", "links"):
        assert after[key] == before[key], key
    assert after["failed_runs"] == 1
    with svc.sql.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(store.extracts)).scalar() == 1


class _SilentEngine(FakeEngine):
    """Links, but never hands its persons over before returning."""

    def update(self, added, removed, previous=None, persons_ready=None):
        return super().update(added, removed, previous)


def test_an_engine_that_never_hands_over_its_persons_stores_nothing(
    db_url, make_service, school, rng
):
    # the persons, links and review are stored from the engine's persons_ready call;
    # an engine that returns without making it fails the apply whole
    svc = make_service(db_url, factory=_SilentEngine)
    with pytest.raises(EngineError, match="persons_ready 0 times"):
        ingest(svc, build_extract(school, [make_record(rng) for _ in range(4)]))
    stats = store.statistics(svc.sql)
    assert (stats["active_records"], stats["persons"], stats["households"]) == (0, 0, 0)
    assert stats["failed_runs"] == 1


def _fails_whole_then_applies(svc, school, rng, patch) -> None:
    """An apply failing under ``patch`` (a context manager) stores nothing of its
    extract; the same extract applies once the patch is gone."""
    recs = [make_record(rng) for _ in range(5)]
    ingest(svc, build_extract(school, recs))
    before = store.statistics(svc.sql)
    fresh = [make_record(rng) for _ in range(3)]
    with patch, pytest.raises(StorageError, match="not applied, database error"):
        ingest(svc, build_extract(school, recs[:2] + fresh))
    after = store.statistics(svc.sql)
    for key in ("active_records", "retired_records", "persons", "households", "links"):
        assert after[key] == before[key], key
    assert after["failed_runs"] == 1
    summary = ingest(svc, build_extract(school, recs[:2] + fresh))
    assert (summary["records_added"], summary["records_retired"]) == (3, 3)


@pytest.mark.parametrize("real_engine", [False, True])
@pytest.mark.parametrize(
    "table",
    ["indicators", "persons", "households", "record_person", "person_household", "links"],
)
def test_failed_insert_in_the_write_thread_rolls_back_everything(
    db_url, make_service, school, rng, table, real_engine
):
    # an insert fails in the apply's write thread after the records' one succeeded
    # (the indicators' while the records are read; the others' while the delta is
    # written): nothing of the extract is stored, and the next extract applies
    svc = make_service(db_url, factory=default_engine_factory if real_engine else FakeEngine)
    real = store.bulk_insert

    def failing(conn, into, columns, rows):
        if into.name == table:
            raise sa.exc.OperationalError(f"INSERT INTO {table}", {}, Exception("disk full"))
        real(conn, into, columns, rows)

    _fails_whole_then_applies(svc, school, rng, _patched(store, "bulk_insert", failing))


def test_a_failure_looking_up_person_ids_rolls_back_everything(db_url, make_service, school, rng):
    # the delta's id look-ups run on the apply's thread while the writer thread
    # inserts: a database error there fails the apply whole, and the engine is rebuilt
    svc = make_service(db_url, factory=default_engine_factory)
    ensure = _service._ensure_ids

    def failing(conn, table, ids, run_id):
        if table is store.persons:
            raise sa.exc.OperationalError("SELECT persons", {}, Exception("disk I/O error"))
        return ensure(conn, table, ids, run_id)

    _fails_whole_then_applies(svc, school, rng, _patched(_service, "_ensure_ids", failing))


def test_a_made_id_the_store_holds_fails_the_apply_whole(db_url, make_service, school, rng):
    # ids the engine makes are inserted without a look-up (64 random bits): were one
    # held after all, its insert fails, nothing of the extract is stored, and the
    # same extract applies once ids are random again
    svc = make_service(db_url, factory=default_engine_factory)
    real = _engine.random_ids
    clashed: list[str] = []

    def clash(prefix: str, k: int) -> list[str]:
        made = real(prefix, k)
        if prefix == "per_" and made and not clashed:
            with svc.sql.connect() as c:
                clashed.append(c.execute(sa.select(sa.func.min(store.persons.c.id))).scalar_one())
            made[0] = clashed[0]
        return made

    _fails_whole_then_applies(svc, school, rng, _patched(_engine, "random_ids", clash))
    assert clashed


@contextmanager
def _patched(owner: object, name: str, value: object) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(owner, name, value)
        yield


def test_restart_rebuilds_engine_from_database(db_url, make_service, school, rng):
    svc = make_service(db_url)
    recs = [make_record(rng) for _ in range(3)]
    ingest(svc, build_extract(school, recs))
    again = make_service(db_url)  # a fresh process over the same database
    summary = ingest(again, build_extract(school, recs[:1]))
    assert summary["records_retired"] == 2 and summary["persons_retired"] == 2


def test_an_apply_records_its_id_events_in_order(db_url, make_service, school, rng):
    """Retired persons before retired households, each sorted, all under the apply's run."""
    svc = make_service(db_url)
    recs = [make_record(rng) for _ in range(4)]
    ingest(svc, build_extract(school, recs))
    ingest(svc, build_extract(school, recs[:1]))
    e = store.open_engine(db_url)
    try:
        with e.connect() as conn:
            events = conn.execute(
                sa.select(
                    store.id_events.c.run_id,
                    store.id_events.c.kind,
                    store.id_events.c.from_id,
                    store.id_events.c.to_id,
                ).order_by(store.id_events.c.id)
            ).all()
            run = conn.execute(sa.select(sa.func.max(store.runs.c.id))).scalar_one()
    finally:
        e.dispose()
    kinds = [k for _, k, _, _ in events]
    assert kinds == ["person_retired"] * 3 + ["household_retired"] * 3
    persons = [f for _, k, f, _ in events if k == "person_retired"]
    households = [f for _, k, f, _ in events if k == "household_retired"]
    assert persons == sorted(persons) and households == sorted(households)
    assert households == ["h-" + p for p in persons]
    assert {r for r, *_ in events} == {run} and {t for *_, t in events} == {None}


def test_a_bulk_transaction_widens_sqlites_page_cache_only_while_it_lasts(tmp_path):
    sql = store.open_engine(f"sqlite:///{tmp_path / 'bulk.db'}")

    def cache() -> int:
        with sql.connect() as c:
            return int(c.exec_driver_sql("PRAGMA cache_size").scalar_one())

    before = cache()
    assert before != -store.BULK_CACHE_KIB
    with store.bulk_transaction(sql) as conn:
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == -store.BULK_CACHE_KIB
        conn.execute(
            store.runs.insert().values(
                id=1, kind="ingest", status="applied", started_at=1, stats="{}"
            )
        )
    assert cache() == before
    with pytest.raises(RuntimeError), store.bulk_transaction(sql) as conn:
        conn.execute(
            store.runs.insert().values(
                id=2, kind="ingest", status="applied", started_at=1, stats="{}"
            )
        )
        raise RuntimeError("mid-apply")
    assert cache() == before
    with sql.connect() as c:  # the first committed, the second rolled back
        assert c.execute(sa.select(store.runs.c.id)).scalars().all() == [1]
    sql.dispose()


def test_unsupported_database_url():
    with pytest.raises(ConfigError, match="unsupported database"):
        store.create_engine("mysql://u@h/db")


def test_storage_error_when_database_is_gone(tmp_path):
    from linkage_service._errors import StorageError

    engine = store.open_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    (tmp_path / "gone.db").unlink()
    (tmp_path / "gone.db").mkdir()  # the path is now a directory: the database cannot open
    engine.dispose()
    with pytest.raises(StorageError):
        store.list_runs(engine)


def test_seeded_rng_is_stable():
    assert random.Random(1).random() == random.Random(1).random()


def _bulk_roundtrip(url: str, limit: int | None = None) -> None:
    engine = store.open_engine(url)
    columns = ("record_a", "record_b", "score", "evidence", "run_id")
    rows = [(k, k + 1, k / 2000, f'{{"k": {k}}}', 7) for k in range(1, 1235)]
    try:
        with engine.begin() as conn:
            _few_parameters(conn, limit)
            store.bulk_insert(conn, store.links, columns, rows)
            got = conn.execute(sa.select(*(store.links.c[c] for c in columns))).all()
        assert sorted(tuple(r) for r in got) == rows
        # a statement that fails takes the whole transaction back with it (PostgreSQL's
        # COPY runs on the driver's own cursor: its error is the driver's)
        with pytest.raises((sa.exc.IntegrityError, psycopg.IntegrityError)), engine.begin() as conn:
            store.bulk_insert(conn, store.links, columns, [(5000, 5001, 0.5, "{}", 8), rows[-1]])
        with engine.connect() as conn:
            held = conn.execute(sa.select(sa.func.count()).select_from(store.links)).scalar_one()
        assert held == len(rows)
    finally:
        engine.dispose()


def test_bulk_insert_reads_back_every_column_type(db_url):
    # on PostgreSQL a binary COPY: each column's type named, dates given as ISO text
    # read as dates, binary as its bytes, NULLs, booleans, floats and small integers
    engine = store.open_engine(db_url)
    try:
        store.add_agency(engine, "school", b"k" * 32, "1" * 16, ["education"])
        records = _record_rows(3)
        records[1] = records[1][:9] + (bytearray(b"\x00\xff" * 64),) + records[1][10:]
        indicators = [(1, "school_attendance", 0.875, "2026-09-01"), (2, "nsi", -1.5, "2026-08-31")]
        with engine.begin() as conn:
            store.bulk_insert(conn, store.records, _service._RECORD_COLUMNS, records)
            store.bulk_insert(conn, store.indicators, _service._INDICATOR_COLUMNS, indicators)
            r, i = store.records.c, store.indicators.c
            got = conn.execute(
                sa.select(*(r[c] for c in _service._RECORD_COLUMNS)).order_by(r.id)
            ).all()
            inds = conn.execute(
                sa.select(*(i[c] for c in _service._INDICATOR_COLUMNS)).order_by(i.record_id)
            ).all()
        date_at = _service._RECORD_COLUMNS.index("extract_date")
        for row, sent in zip(got, records, strict=True):
            values = [bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else v for v in row]
            want = [bytes(v) if isinstance(v, (bytes, bytearray)) else v for v in sent]
            want[date_at] = dt.date.fromisoformat(str(want[date_at]))
            assert values == want
        assert [tuple(x) for x in inds] == [
            (k, t, v, dt.date.fromisoformat(d)) for k, t, v, d in indicators
        ]
    finally:
        engine.dispose()


def test_the_binary_copy_names_a_type_for_every_bulk_written_column():
    # every table the apply writes in bulk goes by the binary COPY on PostgreSQL; a
    # column of a type it does not know sends its table by the text format instead
    written = {
        store.records: _service._RECORD_COLUMNS,
        store.indicators: _service._INDICATOR_COLUMNS,
        store.links: _service._PAIR_COLUMNS,
        store.review: (*_service._PAIR_COLUMNS, "uncertainty"),
        store.id_events: _service._EVENT_COLUMNS,
        store.persons: _service._ID_COLUMNS,
        store.households: _service._ID_COLUMNS,
        store.record_person: ("record_id", "person_id"),
        store.person_household: ("person_id", "household_id"),
    }
    for table, columns in written.items():
        types = store._copy_types(table, columns)
        assert types is not None and len(types) == len(columns), table.name
    assert store._copy_types(store.records, ("id", "extract_date")) == ["int8", "date"]
    other = sa.Table("t", sa.MetaData(), sa.Column("at", sa.DateTime), sa.Column("n", sa.Integer))
    assert store._copy_types(other, ("n",)) == ["int4"]
    assert store._copy_types(other, ("at", "n")) is None


def _record_rows(n: int) -> list[tuple[object, ...]]:
    """``n`` record rows in ``_service._RECORD_COLUMNS`` order, ids 1 .. n."""
    return [
        (k, k, "school", f"{k:032x}", "x1", "x1", True, bytes(32), bytes(16), None, "{}", "{}")
        + (30, None, "F", None, "2026-09-30", b"old")
        for k in range(1, n + 1)
    ]


def _keep_roundtrip(db_url: str, limit: int | None = None) -> None:
    engine = store.open_engine(db_url)
    try:
        store.add_agency(engine, "school", b"k" * 32, "1" * 16, ["education"])
        kept = [(k, f"new{k}".encode()) for k in range(1, 1235) if k % 6 != 0][:1001]
        with engine.begin() as conn:
            store.bulk_insert(conn, store.records, _service._RECORD_COLUMNS, _record_rows(1234))
            _few_parameters(conn, limit)
            store.keep_records(conn, "x2", kept)
            store.keep_records(conn, "x3", [])
            r = store.records.c
            got = {
                i: (x, bytes(s))
                for i, x, s in conn.execute(sa.select(r.id, r.extract_id, r.sealed_identity))
            }
        want = {k: ("x1", b"old") for k in range(1, 1235)}
        want.update({k: ("x2", s) for k, s in kept})
        assert got == want
    finally:
        engine.dispose()


def _few_parameters(conn: Any, limit: int | None) -> None:
    """Lower SQLite's limit on a statement's parameters to ``limit`` (None: leave it)."""
    if limit is not None:
        conn.connection.driver_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)


# The store's batched writes (on SQLite, SQLITE_ROWS_PER_INSERT rows a statement: 500
# here, so a thousand rows make full statements and a partial one), each checked end
# to end, and the parameter limit that leaves it only a few rows a statement.
_BATCHED: dict[str, tuple[Callable[..., None], int]] = {
    # 1,234 rows: two full statements of 500 and one of 234; at 12, 2 rows of 5
    "bulk_insert": (_bulk_roundtrip, 12),
    # 1,001 of 1,234 records kept: 500, 500 and 1; at 12, 5 records a statement
    "keep_records": (_keep_roundtrip, 12),
    # 1,203 pairs named, 1,001 held: 500, 500 and 203; at 9, 4 pairs a statement
    "delete_pairs": (_delete_roundtrip, 9),
}


@pytest.fixture
def rows_500(monkeypatch):
    monkeypatch.setattr(store, "SQLITE_ROWS_PER_INSERT", 500)


@pytest.mark.parametrize("write", sorted(_BATCHED))
def test_batched_writes_change_exactly_the_rows_named(db_url, write, rows_500):
    roundtrip, _ = _BATCHED[write]
    roundtrip(db_url)


@pytest.mark.parametrize("write", sorted(_BATCHED))
def test_batched_writes_take_fewer_rows_a_statement_where_sqlite_allows_fewer_parameters(
    tmp_path, write, rows_500
):
    roundtrip, limit = _BATCHED[write]
    roundtrip(f"sqlite:///{tmp_path / 'few.db'}", limit)
