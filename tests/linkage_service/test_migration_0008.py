"""Migration 0008 (``records.seq``) on a SQLite database that already holds records
referenced by other tables, and on one a failed earlier attempt left half-done."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from linkage_service import _store as store

from ._migrating import at_revision

RECORD = (
    "INSERT INTO records (id, agency_id, record_ref, extract_id, first_extract_id, active, "
    "content_sha256, clk, exact_tokens, blocking_keys, extract_date, sealed_identity) "
    "VALUES ({id}, 'school', 'r{id}', 'e', 'e', 1, x'00', x'00', '[]', '[]', '2026-01-01', x'00')"
)


def _at_0007(path: Any, *, half_done: bool) -> sa.Engine:
    with at_revision(path, "0007") as (engine, conn):
        for record_id in (1, 2, 3):
            conn.execute(sa.text(RECORD.format(id=record_id)))
        conn.execute(
            sa.text(
                "INSERT INTO indicators (record_id, type, value, date) "
                "VALUES (2, 'school_absence', 0.2, '2026-01-01')"
            )
        )
        if half_done:  # the column an earlier failed attempt left behind
            conn.execute(sa.text("ALTER TABLE records ADD COLUMN seq BIGINT"))
    return engine


@pytest.mark.parametrize("half_done", [False, True], ids=["clean", "half-done"])
def test_0008_keeps_every_record_and_its_references(tmp_path: Any, half_done: bool) -> None:
    engine = _at_0007(tmp_path / "old.db", half_done=half_done)
    try:
        store.migrate(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, seq FROM records ORDER BY id")).all()
            indicators = conn.execute(sa.text("SELECT record_id FROM indicators")).all()
            broken = conn.execute(sa.text("PRAGMA foreign_key_check")).all()
    finally:
        engine.dispose()
    assert [(r.id, r.seq) for r in rows] == [(1, 1), (2, 2), (3, 3)]
    assert [i.record_id for i in indicators] == [2]
    assert broken == []
