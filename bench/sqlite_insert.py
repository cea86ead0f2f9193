"""SQLite bulk inserts beside busy Python: one row a statement against several.

The apply inserts an extract's records on a writer thread while the engine
links on another (``linkage_service._service``). Python's sqlite3 driver lets
go of the interpreter lock while SQLite steps a statement and must win it
back after; with one row a statement, a writer beside a thread running
Python waits for the lock once a row. ``store.bulk_insert`` writes up to
``store.SQLITE_ROWS_PER_INSERT`` rows a statement. The driver also binds a
``bytes`` value (and a None) through its adapter registry, a ``bytearray``
directly: the apply passes a record's binary values as ``bytearray``; the
third way here passes them as ``bytes``.

Inserts ``--rows`` record-shaped rows (random ids, 32-byte digest, two
128-byte filters, a 585-byte sealed blob; the records table of the service's
own schema with its indexes) into a new SQLite file, both ways, each alone
and beside a thread that runs Python (dictionary writes) until the insert
ends; prints the insert's wall time, the writer thread's CPU time and how
much Python the busy thread got done.

    .venv/bin/python bench/sqlite_insert.py
    .venv/bin/python bench/sqlite_insert.py --rows 50000   # one row a statement: minutes
    .venv/bin/python bench/sqlite_insert.py --rows 200000 --bulk-only
    .venv/bin/python bench/sqlite_insert.py --rows 200000 --bulk-only --rows-per-statement 500 5000

``--rows-per-statement`` runs the bulk ways once for each value of
``store.SQLITE_ROWS_PER_INSERT`` given (the driver's limit on parameters still caps it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _rows(n: int) -> list[tuple[Any, ...]]:
    """Rows in ``_service._RECORD_COLUMNS`` order, as the apply builds them."""
    out = []
    for seq in range(1, n + 1):
        rid = int.from_bytes(os.urandom(7), "little") | 1
        out.append(
            (rid, seq, "school", os.urandom(16).hex(), "x" * 32, "x" * 32, True)
            + tuple(bytearray(os.urandom(k)) for k in (32, 128, 128))
            + ('{"nhs_number": "' + os.urandom(24).hex() + '"}', '{"k": "' + "cd" * 12 + '"}')
            + (30, None, "F", None, "2026-09-30", bytearray(os.urandom(585)))
        )
    out.sort()  # as the apply sorts them: appends to the id index
    return out


def _as_bytes(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(bytes(v) if isinstance(v, bytearray) else v for v in row) for row in rows]


def _run(rows: list[tuple[Any, ...]], way: str, busy: bool, work: Path) -> str:
    from linkage_service import _store as store
    from linkage_service._service import _RECORD_COLUMNS

    sql = store.open_engine(f"sqlite:///{work / f'{way}-{busy}.db'}")
    store.add_agency(sql, "school", b"k" * 32, "1" * 16, ["education"])
    stop = threading.Event()
    done = [0]

    def spin() -> None:
        d: dict[int, int] = {}
        while not stop.is_set():
            for k in range(1000):
                d[k] = k
            done[0] += 1

    spinner = threading.Thread(target=spin, daemon=True)
    with store.bulk_transaction(sql) as conn:
        if busy:
            spinner.start()
        t0, c0 = time.perf_counter(), time.thread_time()
        for k in range(0, len(rows), 20_000):  # the apply's rounds
            part = rows[k : k + 20_000]
            if way == "bulk_insert, blobs as bytes":
                store.bulk_insert(conn, store.records, _RECORD_COLUMNS, _as_bytes(part))
            elif way == "one row a statement":
                marks = ", ".join("?" for _ in _RECORD_COLUMNS)
                conn.exec_driver_sql(
                    f"INSERT INTO records ({', '.join(_RECORD_COLUMNS)}) VALUES ({marks})", part
                )
            else:
                store.bulk_insert(conn, store.records, _RECORD_COLUMNS, part)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if way == "bulk_insert, blobs as bytes":  # less the conversion's own time
            t1, c1 = time.perf_counter(), time.thread_time()
            for k in range(0, len(rows), 20_000):
                _as_bytes(rows[k : k + 20_000])
            wall -= time.perf_counter() - t1
            cpu -= time.thread_time() - c1
        stop.set()
        if busy:
            spinner.join()
    sql.dispose()
    where = "beside busy Python" if busy else "alone"
    beside = f", busy thread {done[0]:,} rounds" if busy else ""
    return f"{way:>27}, {where:>18}: {wall:6.2f}s wall, writer CPU {cpu:5.2f}s{beside}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--bulk-only", action="store_true", help="leave out one row a statement")
    ap.add_argument(
        "--rows-per-statement",
        type=int,
        nargs="+",
        help="store.SQLITE_ROWS_PER_INSERT values to run the bulk ways with (default: as shipped)",
    )
    args = ap.parse_args()
    from linkage_service import _store as store

    rows = _rows(args.rows)
    print(f"{args.rows:,} record rows")
    with tempfile.TemporaryDirectory(prefix="sqlite-insert-") as tmp:
        ways = ("one row a statement", "bulk_insert, blobs as bytes", "bulk_insert")
        for per in args.rows_per_statement or [store.SQLITE_ROWS_PER_INSERT]:
            store.SQLITE_ROWS_PER_INSERT = per
            print(f"bulk_insert at up to {per:,} rows a statement")
            work = Path(tmp) / str(per)  # a new database file for each run
            work.mkdir()
            for way in ways[1:] if args.bulk_only else ways:
                for busy in (False, True):
                    print(_run(rows, way, busy, work), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
