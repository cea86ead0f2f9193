"""Durable storage of the audit log: tables, engines, migrations and queries.

SQLite (one file, WAL, ``synchronous=FULL``) by default and PostgreSQL in
production, both through SQLAlchemy Core: a batch of a few hundred rows goes
in with one ``executemany`` and one commit, which is what makes durable group
commit fast. (SQLModel's ORM layer would add per-row objects for no gain; the
tables are declared once here and created by the alembic migrations in
``_migrations``.) Triggers in the database forbid UPDATE and DELETE (and
TRUNCATE on PostgreSQL) of every table, so even a buggy caller cannot rewrite
history through this module; a database owner can still drop the triggers,
which is why verification never trusts the database and recomputes the tree.

Whatever must agree with itself (the entries and the checkpoints that vouch
for them) is read inside ``snapshot``: one read transaction that sees a single
committed state, so a verifier racing live appends never sees a checkpoint
newer than the entries it read.

This module knows nothing of signatures or Merkle trees and must never
modify or delete a row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from service_common import (
    create_database_engine,
    migrate_database,
    normalise_database_url,
    open_database,
)

from ._entries import micros
from ._storage_errors import StorageError, TamperError

__all__ = [
    "SCAN_COLUMNS",
    "VERSION_TABLE",
    "EntryFilter",
    "StoredEntry",
    "checkpoints",
    "cosignatures",
    "entries",
    "open_engine",
    "scan_rows",
    "snapshot",
    "stored_bytes",
]

VERSION_TABLE = "audit_log_alembic_version"

normalise_url = normalise_database_url

metadata = sa.MetaData()

entries = sa.Table(
    "entries",
    metadata,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("leaf_data", sa.LargeBinary, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("professional_id", sa.String(80)),
    sa.Column("family_id", sa.String(80)),
    sa.Column("purpose_code", sa.String(32)),
    sa.Column("decision", sa.String(16)),
    sa.Column("request_id", sa.String(80)),
    sa.Column("event_time", sa.BigInteger, nullable=False),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

cosignatures = sa.Table(
    "cosignatures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("witness", sa.String(200), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


def create_engine(url: str) -> Engine:
    """An engine for ``url`` with the durability settings the log needs (no migration).

    SQLite: WAL lets readers run beside the writer; synchronous=FULL makes every
    commit an fsync of the WAL, so an acknowledged entry survives power loss.
    """
    return create_database_engine(
        url, error=StorageError, synchronous="FULL", busy_timeout_ms=10_000
    )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision with the packaged alembic scripts."""
    migrate_database(engine, "audit_log:_migrations", "audit log database", StorageError)


def open_engine(url: str, *, migrate_schema: bool = True) -> Engine:
    """Create an engine for ``url`` and (by default) migrate its schema."""
    return open_database(create_engine, migrate, url, migrate_schema=migrate_schema)


def now_micros() -> int:
    """The current time in microseconds since the Unix epoch."""
    return int(datetime.now().timestamp() * 1_000_000)


def stored_bytes(value: object, index: int, column: str) -> bytes:
    """A binary column's value; TamperError if someone stored another type there.

    SQLite keeps whatever type a statement writes (``replace()`` on a BLOB
    yields TEXT), so a row edited outside the log can hold text or a number.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TamperError(
        f"entry {index}: column {column} holds {type(value).__name__}, not bytes "
        "(row changed outside the log)",
        index=index,
    )


def insert_entries(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    """Insert one batch of entry rows in a single durable transaction."""
    try:
        with engine.begin() as connection:
            connection.execute(entries.insert(), list(rows))
    except SQLAlchemyError as exc:
        first = rows[0]["idx"] if rows else None
        raise StorageError(f"cannot append entries from index {first}: {exc}") from exc


Bind = Engine | Connection


@contextmanager
def _connected(bind: Bind) -> Iterator[Connection]:
    # A caller inside ``snapshot`` passes its connection; others get a fresh one.
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as connection:
            yield connection


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection whose every read sees one committed state.

    PostgreSQL: a REPEATABLE READ, READ ONLY transaction (its snapshot is taken
    at the first statement). SQLite: pysqlite starts no transaction for a
    SELECT, so each statement would see the newest state; an explicit BEGIN
    makes the reads one transaction, whose WAL snapshot is fixed by its first
    read. Writers are not blocked either way.
    """
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
                with connection.begin():
                    connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                    yield connection
            else:
                connection.exec_driver_sql("BEGIN")
                try:
                    yield connection
                finally:
                    connection.rollback()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read a consistent snapshot of the log: {exc}") from exc


# What scan_rows yields per entry, in this order (audit_log._leafscan reads
# rows by position).
SCAN_COLUMNS = (
    "idx",
    "leaf_data",
    "leaf_hash",
    "type",
    "professional_id",
    "family_id",
    "purpose_code",
    "decision",
    "request_id",
    "event_time",
)


def scan_rows(
    connection: Connection, start: int = 0, batch: int = 10_000
) -> Iterator[list[tuple[Any, ...]]]:
    """Every entry row from ``start`` in index order, as lists of plain tuples.

    The start-up check reads every row, so this goes to the driver's own
    cursor (a server-side one on PostgreSQL): SQLAlchemy's row objects would
    cost more than the checks themselves. Use it inside ``snapshot``.
    """
    dialect = connection.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT {', '.join(SCAN_COLUMNS)} FROM {entries.name} WHERE idx >= {mark} ORDER BY idx"
    driver_error: type[Exception] = dialect.loaded_dbapi.Error
    try:
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        # A named (server-side) cursor on PostgreSQL, so rows arrive batch by batch.
        named = {"name": "audit_log_scan"} if dialect.name == "postgresql" else {}
        cursor: Any = dbapi.cursor(**named)
        try:
            cursor.execute(sql, (start,))
            while rows := cursor.fetchmany(batch):
                yield list(rows)
        finally:
            cursor.close()
    except (SQLAlchemyError, driver_error) as exc:
        raise StorageError(f"cannot read entries from index {start}: {exc}") from exc


def leaf_hashes(engine: Engine) -> Iterator[tuple[int, bytes]]:
    """Yield ``(index, leaf_hash)`` of every stored entry in index order."""
    query = sa.select(entries.c.idx, entries.c.leaf_hash).order_by(entries.c.idx)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=20_000).execute(query)
            for idx, leaf_hash in result:
                yield int(idx), stored_bytes(leaf_hash, int(idx), "leaf_hash")
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read leaf hashes: {exc}") from exc


def entry_rows(bind: Bind, start: int = 0) -> Iterator[sa.Row[Any]]:
    """Yield every stored entry row (all columns) from ``start`` in index order."""
    query = sa.select(entries).where(entries.c.idx >= start).order_by(entries.c.idx)
    try:
        with _connected(bind) as connection:
            yield from connection.execution_options(yield_per=5_000).execute(query)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read entries: {exc}") from exc


def count_entries(engine: Engine) -> int:
    """Number of stored entry rows."""
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(entries)).scalar_one()
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot count entries: {exc}") from exc


def leaf_batches(
    bind: Bind, start: int, end: int, batch: int = 10_000
) -> Iterator[list[tuple[int, bytes]]]:
    """``(index, leaf_data)`` of entries in ``[start, end)`` in index order, in batches."""
    query = (
        sa.select(entries.c.idx, entries.c.leaf_data)
        .where(entries.c.idx >= start, entries.c.idx < end)
        .order_by(entries.c.idx)
    )
    try:
        with _connected(bind) as connection:
            result = connection.execution_options(yield_per=batch).execute(query)
            for part in result.partitions():
                yield [(int(i), stored_bytes(data, int(i), "leaf_data")) for i, data in part]
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read entries {start}..{end - 1}: {exc}") from exc


def get_leaf(engine: Engine, index: int) -> bytes | None:
    """Leaf data stored at ``index``, or None."""
    try:
        with engine.connect() as connection:
            value = connection.execute(
                sa.select(entries.c.leaf_data).where(entries.c.idx == index)
            ).scalar_one_or_none()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read entry {index}: {exc}") from exc
    return None if value is None else stored_bytes(value, index, "leaf_data")


def insert_checkpoint(engine: Engine, size: int, note: str) -> None:
    """Persist a signed checkpoint note (before it is ever published)."""
    try:
        with engine.begin() as connection:
            connection.execute(
                checkpoints.insert(), {"size": size, "note": note, "created_at": now_micros()}
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot store checkpoint of size {size}: {exc}") from exc


def insert_cosignature(engine: Engine, size: int, witness: str, line: str) -> None:
    """Persist a witness cosignature line for the checkpoint of ``size``."""
    try:
        with engine.begin() as connection:
            connection.execute(
                cosignatures.insert(),
                {"size": size, "witness": witness, "line": line, "created_at": now_micros()},
            )
    except SQLAlchemyError as exc:
        raise StorageError(
            f"cannot store cosignature of {witness!r} for size {size}: {exc}"
        ) from exc


def all_checkpoints(bind: Bind) -> list[tuple[int, str]]:
    """Every stored ``(size, note)`` in size order."""
    try:
        with _connected(bind) as connection:
            rows = connection.execute(
                sa.select(checkpoints.c.size, checkpoints.c.note).order_by(checkpoints.c.size)
            ).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read checkpoints: {exc}") from exc
    return [(int(size), str(note)) for size, note in rows]


def checkpoints_after(bind: Bind, size: int) -> list[tuple[int, str]]:
    """Every stored ``(size, note)`` larger than ``size``, in size order."""
    try:
        with _connected(bind) as connection:
            rows = connection.execute(
                sa.select(checkpoints.c.size, checkpoints.c.note)
                .where(checkpoints.c.size > size)
                .order_by(checkpoints.c.size)
            ).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read checkpoints after size {size}: {exc}") from exc
    return [(int(s), str(note)) for s, note in rows]


def checkpoint_sizes(bind: Bind) -> list[int]:
    """The size of every stored checkpoint, ascending."""
    try:
        with _connected(bind) as connection:
            sizes = connection.execute(
                sa.select(checkpoints.c.size).order_by(checkpoints.c.size)
            ).scalars()
            return [int(size) for size in sizes]
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read checkpoint sizes: {exc}") from exc


def checkpoint_note(bind: Bind, size: int) -> str | None:
    """The stored checkpoint note of ``size``, or None."""
    try:
        with _connected(bind) as connection:
            note = connection.execute(
                sa.select(checkpoints.c.note).where(checkpoints.c.size == size)
            ).scalar_one_or_none()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the checkpoint of size {size}: {exc}") from exc
    return None if note is None else str(note)


def latest_checkpoint(bind: Bind) -> tuple[int, str] | None:
    """The stored checkpoint with the largest size, or None."""
    try:
        with _connected(bind) as connection:
            row = connection.execute(
                sa.select(checkpoints.c.size, checkpoints.c.note)
                .order_by(checkpoints.c.size.desc())
                .limit(1)
            ).first()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the latest checkpoint: {exc}") from exc
    return None if row is None else (int(row[0]), str(row[1]))


def cosignature_lines(engine: Engine, size: int) -> dict[str, str]:
    """Witness name → cosignature line stored for the checkpoint of ``size``."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(cosignatures.c.witness, cosignatures.c.line)
                .where(cosignatures.c.size == size)
                .order_by(cosignatures.c.id)
            ).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read cosignatures for size {size}: {exc}") from exc
    return {str(w): str(line) for w, line in rows}


@dataclass(frozen=True)
class EntryFilter:
    """Which entries a query wants; None means "any"."""

    type: str | None = None
    professional_id: str | None = None
    family_id: str | None = None
    purpose_code: str | None = None
    decision: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    start_index: int = 0
    # Exclusive upper bound on the index: a verifying client asks only for
    # entries its signed checkpoint covers.
    end_index: int | None = None
    limit: int | None = 100

    def is_unfiltered(self) -> bool:
        """Whether no field or time filter is set (the index range may still be)."""
        return all(
            getattr(self, name) is None
            for name in (
                "type",
                "professional_id",
                "family_id",
                "purpose_code",
                "decision",
                "request_id",
                "since",
                "until",
            )
        )


@dataclass(frozen=True)
class StoredEntry:
    """One stored entry as queries return it."""

    index: int
    leaf_data: bytes
    leaf_hash: bytes


def query_entries(engine: Engine, where: EntryFilter) -> list[StoredEntry]:
    """Entries matching ``where`` in index order (``since`` inclusive, ``until`` exclusive)."""
    query = sa.select(entries.c.idx, entries.c.leaf_data, entries.c.leaf_hash).where(
        entries.c.idx >= where.start_index
    )
    if where.end_index is not None:
        query = query.where(entries.c.idx < where.end_index)
    for column in ("type", "professional_id", "family_id", "purpose_code", "decision"):
        value = getattr(where, column)
        if value is not None:
            query = query.where(entries.c[column] == value)
    if where.request_id is not None:
        query = query.where(entries.c.request_id == where.request_id)
    if where.since is not None:
        query = query.where(entries.c.event_time >= micros(where.since))
    if where.until is not None:
        query = query.where(entries.c.event_time < micros(where.until))
    query = query.order_by(entries.c.idx)
    if where.limit is not None:
        query = query.limit(where.limit)
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot query entries: {exc}") from exc
    return [
        StoredEntry(
            int(i), stored_bytes(d, int(i), "leaf_data"), stored_bytes(h, int(i), "leaf_hash")
        )
        for i, d, h in rows
    ]
