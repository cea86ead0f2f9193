"""Storage: migrations, append-only triggers, queries — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from audit_log import _store as store
from audit_log._entries import entry_columns, leaf_bytes
from audit_log._merkle import leaf_hash
from audit_log._storage_errors import StorageError

from ._factories import T0, db_url_factory, hex_id, make_entry

__all__ = ["db_url_factory"]


def _rows(start: int, count: int) -> list[dict[str, object]]:
    rows = []
    for i in range(start, start + count):
        entry = make_entry("decision", i)
        data = leaf_bytes(i, T0, entry)
        row = entry_columns(entry) | {
            "idx": i,
            "leaf_data": data,
            "leaf_hash": leaf_hash(data),
            "created_at": 0,
        }
        rows.append(row)
    return rows


def test_migration_is_idempotent(db_url_factory: Callable[[], str]) -> None:
    url = db_url_factory()
    store.open_engine(url).dispose()
    engine = store.open_engine(url)
    with engine.connect() as connection:
        version = connection.execute(sa.text(f"SELECT version_num FROM {store.VERSION_TABLE}"))
        assert version.scalar_one() == "0001"
    engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET decision = 'refused'",
        "DELETE FROM entries WHERE idx = 1",
        "UPDATE checkpoints SET note = 'x'",
        "DELETE FROM checkpoints",
        "DELETE FROM cosignatures",
    ],
)
def test_triggers_forbid_update_and_delete(
    db_url_factory: Callable[[], str], statement: str
) -> None:
    engine = store.open_engine(db_url_factory())
    store.insert_entries(engine, _rows(0, 3))
    store.insert_checkpoint(engine, 3, "note")
    store.insert_cosignature(engine, 3, "w", "line")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(sa.text(statement))
    assert store.count_entries(engine) == 3
    engine.dispose()


@pytest.mark.postgres
def test_postgres_forbids_truncate(postgres_url: str) -> None:
    engine = store.open_engine(postgres_url)
    for table in ("entries", "checkpoints", "cosignatures"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {table}"))
    engine.dispose()


def test_duplicate_index_is_a_storage_error(db_url_factory: Callable[[], str]) -> None:
    engine = store.open_engine(db_url_factory())
    store.insert_entries(engine, _rows(0, 2))
    with pytest.raises(StorageError, match="from index 1"):
        store.insert_entries(engine, _rows(1, 2))
    assert store.count_entries(engine) == 2  # the failed batch left nothing behind
    engine.dispose()


def test_queries_filter_and_page(db_url_factory: Callable[[], str]) -> None:
    engine = store.open_engine(db_url_factory())
    store.insert_entries(engine, _rows(0, 20))
    pro = hex_id("pro", 1)
    found = store.query_entries(engine, store.EntryFilter(professional_id=pro, limit=None))
    assert [e.index for e in found] == [i for i in range(20) if i % 3 == 1]
    refused = store.query_entries(engine, store.EntryFilter(decision="refused", limit=None))
    assert [e.index for e in refused] == [0, 4, 8, 12, 16]
    window = store.EntryFilter(
        since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=8), limit=None
    )
    assert [e.index for e in store.query_entries(engine, window)] == [5, 6, 7]
    page = store.query_entries(engine, store.EntryFilter(start_index=10, limit=4))
    assert [e.index for e in page] == [10, 11, 12, 13]
    assert store.query_entries(engine, store.EntryFilter(family_id=hex_id("fam", 99))) == []
    engine.dispose()


def test_bad_urls_are_storage_errors(tmp_path: object) -> None:
    with pytest.raises(StorageError, match="unsupported database"):
        store.open_engine("mysql://x@localhost/db")
    with pytest.raises(StorageError, match="database URL"):
        store.open_engine("://nowhere")


def test_url_normalisation() -> None:
    assert store.normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert store.normalise_url("/tmp/x.db") == "sqlite:////tmp/x.db"
