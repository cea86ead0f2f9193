"""Migration 0010 (records' indexes) on a database that holds active and retired
records, including one a failed earlier attempt left half-done."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from linkage_service import _store as store

from ._migrating import at_revision

RECORD = (
    "INSERT INTO records (id, seq, agency_id, record_ref, extract_id, first_extract_id, active, "
    "content_sha256, clk, exact_tokens, blocking_keys, extract_date, sealed_identity) "
    "VALUES ({id}, {id}, 'school', '{ref}', 'e', 'e', {active}, x'00', x'00', '[]', '[]', "
    "'2026-01-01', x'00')"
)


def _at_0009(path: Any, *, half_done: bool) -> sa.Engine:
    with at_revision(path, "0009") as (engine, conn):
        # r1 held twice (retired, then active again), r2 retired, r3 active
        for record_id, ref, active in ((1, "r1", 0), (2, "r1", 1), (3, "r2", 0), (4, "r3", 1)):
            conn.execute(sa.text(RECORD.format(id=record_id, ref=ref, active=active)))
        if half_done:  # what an attempt that stopped after its first step left
            conn.execute(sa.text("DROP INDEX uq_records_active_ref"))
    return engine


def _indexes(conn: sa.Connection) -> dict[str, str]:
    rows = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' "
        "AND sql IS NOT NULL"
    )
    return {str(name): str(sql) for name, sql in rows}


@pytest.mark.parametrize("half_done", [False, True], ids=["clean", "half-done"])
def test_0010_swaps_the_indexes_and_keeps_every_record(tmp_path: Any, half_done: bool) -> None:
    engine = _at_0009(tmp_path / "old.db", half_done=half_done)
    try:
        store.migrate(engine)
        store.migrate(engine)  # idempotent
        with engine.connect() as conn:
            indexes = _indexes(conn)
            rows = conn.execute(sa.text("SELECT id, active FROM records ORDER BY id")).all()
            retired = conn.exec_driver_sql(
                "SELECT id FROM records INDEXED BY ix_records_retired_ref "
                "WHERE agency_id = 'school' AND record_ref = 'r1' AND active = 0"
            ).all()
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(RECORD.format(id=5, ref="r1", active=1)))
        with engine.begin() as conn:  # a second retired copy of a ref is allowed
            conn.execute(sa.text(RECORD.format(id=6, ref="r1", active=0)))
    finally:
        engine.dispose()
    assert sorted(indexes) == ["ix_records_retired_ref", "uq_records_active_ref", "uq_records_seq"]
    assert "active = 1" in indexes["uq_records_active_ref"]
    assert "active = 0" in indexes["ix_records_retired_ref"]
    assert [(r.id, r.active) for r in rows] == [(1, 0), (2, 1), (3, 0), (4, 1)]
    assert [r.id for r in retired] == [1]
