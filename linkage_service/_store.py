"""Durable storage of the linkage service: tables, engines, migrations, registry and reads.

SQLite (one file, WAL) by default and PostgreSQL by URL, through SQLAlchemy
Core: ingest writes hundreds of thousands of rows with ``executemany`` in one
transaction, which SQLModel's per-row ORM objects would only slow down. The
matcher's tables are declared here (the programme's in ``programme/_store.py``, on
the same ``metadata``) and created by the alembic migrations in
``_migrations`` (a test checks the two agree).

What is stored: encodings, keyed tokens, coarse attributes, indicators and
sealed identity blobs the service cannot open. The sealed blobs are written
and never returned by any function here. No plaintext identifier exists to
be stored.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, NamedTuple, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from service_common import (
    create_database_engine,
    migrate_database,
    normalise_database_url,
    open_database,
    redact_url,
)

from ._errors import ConfigError, ConflictError, NotFound, StorageError

__all__ = [
    "VERSION_TABLE",
    "Agency",
    "create_engine",
    "metadata",
    "migrate",
    "open_engine",
]

VERSION_TABLE = "linkage_service_alembic_version"
CHUNK = 500  # IN-list size: well under SQLite's and PostgreSQL's parameter limits
ARRAY_CHUNK = 50_000  # values per PostgreSQL array parameter (key_in)
ANALYSIS_LIMIT = 1000  # rows SQLite's ANALYZE reads per index (PRAGMA analysis_limit)
# SQLite page cache of an apply's connection while it writes (KiB; 2 MiB otherwise)
BULK_CACHE_KIB = 256 * 1024
# columns PostgreSQL's ANALYZE after an apply skips (no query's predicate uses them)
UNANALYZED = frozenset(
    {
        "clk",
        "address_clk",
        "sealed_identity",
        "exact_tokens",
        "blocking_keys",
        "content_sha256",
        "evidence",
        "impact_detail",
    }
)

normalise_url = normalise_database_url
redact = redact_url

metadata = sa.MetaData()

agencies = sa.Table(
    "agencies",
    metadata,
    sa.Column("agency_id", sa.String(40), primary_key=True),
    sa.Column("idx", sa.SmallInteger, nullable=False, unique=True),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("extract_types", sa.Text, nullable=False),
    sa.Column("registered_at", sa.BigInteger, nullable=False),
)
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("agency_id", sa.String(40)),
    sa.Column("extract_id", sa.String(32)),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("stats", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
)
extracts = sa.Table(
    "extracts",
    metadata,
    sa.Column("extract_id", sa.String(32), primary_key=True),
    sa.Column("agency_id", sa.String(40), sa.ForeignKey("agencies.agency_id"), nullable=False),
    sa.Column("extract_type", sa.String(40), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("extract_date", sa.Date, nullable=False),
    sa.Column("schema_fingerprint", sa.String(64), nullable=False),
    sa.Column("record_count", sa.Integer, nullable=False),
    sa.Column("records_sha256", sa.String(64), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("seal_key_id", sa.String(16)),
    sa.Index("ix_extracts_agency_status", "agency_id", "status"),
)
records = sa.Table(
    "records",
    metadata,
    # A random id (fresh_record_ids): the API shows it, so it must not tell the
    # order records arrived in. That order is ``seq``, which never leaves the database.
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    # Nullable in the schema only: migration 0008 adds it in place (a rebuild of
    # records would break the foreign keys into it); every insert sets it.
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("agency_id", sa.String(40), sa.ForeignKey("agencies.agency_id"), nullable=False),
    sa.Column("record_ref", sa.String(32), nullable=False),
    sa.Column("extract_id", sa.String(32), nullable=False),
    sa.Column("first_extract_id", sa.String(32), nullable=False),
    sa.Column("retired_by", sa.String(32)),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("content_sha256", sa.LargeBinary(32), nullable=False),
    sa.Column("clk", sa.LargeBinary, nullable=False),
    sa.Column("address_clk", sa.LargeBinary),
    # JSON {type: token hex}: the built-in identifiers by name and the agencies' own
    # as "id:<name>" (_batch.LOCAL_TOKEN_PREFIX); no table change was needed for them
    sa.Column("exact_tokens", sa.Text, nullable=False),
    sa.Column("blocking_keys", sa.Text, nullable=False),
    # need to know (extract v2): whole years under 25, else age_band (migration 0009)
    sa.Column("age", sa.SmallInteger),
    sa.Column("sex", sa.String(1)),
    # only a child's (0-18) or an expectant parent's record carries its district
    sa.Column("district", sa.String(4)),
    sa.Column("extract_date", sa.Date, nullable=False),
    sa.Column("sealed_identity", sa.LargeBinary, nullable=False),
    sa.Column("age_band", sa.String(5)),
    # Partial indexes are used only by a query whose WHERE holds their condition as
    # written: SQLAlchemy writes ``active`` as ``active = 1`` and ``~active`` as
    # ``active = 0`` on SQLite (migration 0010).
    sa.Index(
        "uq_records_active_ref",
        "agency_id",
        "record_ref",
        unique=True,
        sqlite_where=sa.text("active = 1"),
        postgresql_where=sa.text("active"),
    ),
    # the same key for retired records (a record is inserted active: inserts skip it)
    sa.Index(
        "ix_records_retired_ref",
        "agency_id",
        "record_ref",
        sqlite_where=sa.text("active = 0"),
        postgresql_where=sa.text("NOT active"),
    ),
    sa.Index("uq_records_seq", "seq", unique=True),
)
indicators = sa.Table(
    "indicators",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.BigInteger, sa.ForeignKey("records.id"), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Index("ix_indicators_record", "record_id"),
)
persons = sa.Table(
    "persons",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_run", sa.Integer, nullable=False),
    sa.Column("retired_run", sa.Integer),
)
record_person = sa.Table(
    "record_person",
    metadata,
    sa.Column("record_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("person_id", sa.String(64), nullable=False),
    sa.Index("ix_record_person_person", "person_id"),
)
households = sa.Table(
    "households",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_run", sa.Integer, nullable=False),
    sa.Column("retired_run", sa.Integer),
)
person_household = sa.Table(
    "person_household",
    metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("household_id", sa.String(64), nullable=False),
    sa.Index("ix_person_household_household", "household_id"),
)


def _pair_table(name: str, *extra: sa.schema.SchemaItem) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("record_a", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("record_b", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Index(f"ix_{name}_record_b", "record_b"),
        *extra,
    )


links = _pair_table("links")
# The review queue's order is stored, so reading a page is one index range scan:
# queue_rank 0 for a pair whose match would change a family's eligibility or unlock
# threshold status in the latest assessment cycle, 1 otherwise (or not assessed yet);
# then uncertainty |probability - 0.5|, the least certain first. The impact columns
# are written by each assessment cycle and reset (NULL, rank 1) when the engine
# rewrites the pair; see ``_review``.
review = _pair_table(
    "review",
    sa.Column("uncertainty", sa.Float, nullable=False),
    sa.Column("queue_rank", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("impact", sa.String(12)),
    sa.Column("impact_cycle", sa.Integer),
    sa.Column("impact_detail", sa.Text),
    sa.Index("ix_review_queue", "queue_rank", "uncertainty", "record_a", "record_b"),
    # a match probability; pairs scored by the retired Dice-plus-bonus scorer (up to
    # 1.03 and more) are removed by migration 0007 and can never be written again
    sa.CheckConstraint("score >= 0 AND score <= 1", name="ck_review_probability"),
)
# Clerical decisions on record pairs (``_decisions``): append-only. A pair's first
# decision is version 1 and each recorded change the next version; the unique
# (pair, version) makes concurrent deciders of one pair have exactly one winner.
# The decision in force is the pair's highest version.
review_decisions = sa.Table(
    "review_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_a", sa.BigInteger, nullable=False),
    sa.Column("record_b", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("decision", sa.String(12), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("score", sa.Float),  # the pair's probability when decided (None: not scored)
    sa.Column("evidence", sa.Text),  # the pair's evidence when decided (JSON)
    sa.Column("decided_at", sa.BigInteger, nullable=False),
    sa.Column("decided_by", sa.String(80), nullable=False),
    sa.UniqueConstraint("record_a", "record_b", "version", name="uq_review_decisions_version"),
    sa.CheckConstraint("record_a < record_b", name="ck_review_decisions_order"),
    sa.CheckConstraint("decision IN ('match', 'non_match')", name="ck_review_decisions_decision"),
    sa.Index("ix_review_decisions_record_b", "record_b"),
)
REVIEW_CENTRE = 0.5  # the probability at which a pair is least certain


def review_uncertainty(score: float) -> float:
    """How far a review pair's match probability is from 0.5 (0 is the least certain)."""
    return abs(float(score) - REVIEW_CENTRE)


id_events = sa.Table(
    "id_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("from_id", sa.String(64), nullable=False),
    sa.Column("to_id", sa.String(64)),
    sa.Index("ix_id_events_from", "from_id"),
)


# --- engines and migrations -----------------------------------------------------------


def create_engine(url: str) -> Engine:
    """An engine for ``url`` (sqlite or postgresql), without migrating.

    SQLite: WAL, so readers keep reading while an extract is applied in one long
    transaction; every commit fsynced; foreign keys enforced.
    """
    return create_database_engine(
        url, error=ConfigError, synchronous="FULL", foreign_keys=True, pool_pre_ping=True
    )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision with the packaged alembic scripts."""
    migrate_database(engine, "linkage_service:_migrations", "linkage database", StorageError)


def open_engine(url: str, *, migrate_schema: bool = True) -> Engine:
    """Create an engine for ``url`` and (by default) migrate its schema."""
    return open_database(create_engine, migrate, url, migrate_schema=migrate_schema)


@contextmanager
def bulk_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction for bulk writes (an apply), committed on success.

    SQLite: the connection's page cache is :data:`BULK_CACHE_KIB` until the
    transaction ends, then back to what it was. With the default 2 MiB, inserts
    with random keys (record ids, refs, person ids) into indexes of tens of MB
    read most index pages back from the file: a 100,000-record insert at 200,000
    held took 40% less CPU with 64 MiB or more.
    """
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
        before = 0
        if raw is not None:
            before = int(raw.execute("PRAGMA cache_size").fetchone()[0])
            raw.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        try:
            with conn.begin():
                yield conn
        finally:
            if raw is not None:
                try:
                    raw.execute(f"PRAGMA cache_size={before}")
                except sqlite3.Error:
                    conn.invalidate()  # broken with the transaction: not back to the pool


def family_id_of(household_id: str) -> str:
    """The family id of a household (the same hex, prefix ``fam_``)."""
    return "fam_" + household_id.split("_", 1)[1]


MAX_RECORD_ID = 2**53 - 1  # JSON clients (browsers) read ids as doubles: exact up to 2^53


def fresh_record_ids(conn: Connection, n: int) -> list[int]:
    """``n`` distinct random record ids held by no stored record.

    Record ids are shown by the API (review pairs, decisions, id lookups) and
    records used to be numbered in the order their lines arrived, which was the
    order of the agency's rows: a random id says nothing of either. Uniform on
    1 .. 2^53 - 1, from the operating system's generator (53 bits of
    ``secrets.token_bytes`` per id; zero, a held id or one drawn already is
    drawn again), checked against every stored id at once.
    """
    # read on the driver's own cursor, flattened in C: through SQLAlchemy's result,
    # a row at a time, a refresh's seven pushes spent 4.6 s reading a million ids
    raw: Any = conn.connection.driver_connection
    cur = raw.cursor()
    try:
        cur.execute("SELECT id FROM records")
        held = np.fromiter(chain.from_iterable(cur), dtype=np.int64)
    finally:
        cur.close()
    held.sort()
    out: list[int] = []
    seen: set[int] = set()
    while len(out) < n:
        raw = np.frombuffer(secrets.token_bytes(8 * (n - len(out))), dtype="<u8")
        drawn = (raw & np.uint64(MAX_RECORD_ID)).astype(np.int64)
        drawn = drawn[drawn != 0]
        if held.size:
            at = np.minimum(np.searchsorted(held, drawn), held.size - 1)
            drawn = drawn[held[at] != drawn]
        for rid in drawn.tolist():
            if rid not in seen:
                seen.add(rid)
                out.append(rid)
    return out


# Rows in one SQLite insert statement of bulk_insert (fewer if the driver's limit on
# parameters is lower). The driver lets go of the interpreter lock for each statement
# it steps and, beside a thread running Python, waits up to the switch interval (5 ms)
# to win it back: 200,000 record rows beside busy Python took 5.9-9.5 s at 500 rows a
# statement, 3.3-5.4 s at 5,000 (bench/sqlite_insert.py --rows-per-statement).
SQLITE_ROWS_PER_INSERT = 5000


def bulk_insert(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) in bulk, inside the caller's transaction.

    PostgreSQL: one ``COPY ... FROM STDIN (FORMAT BINARY)`` (:func:`_copy_types`;
    the text format when a column's type has no binary form here); SQLite: an
    ``executemany`` of a prepared insert of up to :data:`SQLITE_ROWS_PER_INSERT`
    rows at a time (the driver lets go of the interpreter lock for each statement
    it steps and must win it back after: one row a statement, an insert running
    in a thread beside busy Python waited for the lock once per row). Values go
    to the driver as they are: dates as ISO text (what SQLAlchemy stores on
    SQLite; the binary COPY reads them as dates), booleans as ``bool``, binary
    as ``bytes`` or ``bytearray`` (which SQLite's driver binds without its
    adapter look-up).
    A failure raises SQLAlchemy's error, as every other statement does (the COPY
    talks to psycopg directly: its error is wrapped as SQLAlchemy would wrap it).
    """
    if not rows:
        return
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        import psycopg  # loaded already (the connection is psycopg's); SQLite never needs it

        driver: Any = conn.connection.driver_connection
        types = _copy_types(table, columns)
        binary = " (FORMAT BINARY)" if types is not None else ""
        copying = f"COPY {table.name} ({names}) FROM STDIN{binary}"
        dates = [k for k, t in enumerate(types or ()) if t == "date"]
        try:
            with driver.cursor() as cur, cur.copy(copying) as copy:
                if types is not None:
                    copy.set_types(types)
                for row in rows:
                    copy.write_row(_with_dates(row, dates) if dates else row)
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(copying, None, exc, psycopg.Error) from exc
        return
    one = "(" + ", ".join("?" for _ in columns) + ")"
    _sqlite_rows_a_statement(
        conn,
        lambda n: f"INSERT INTO {table.name} ({names}) VALUES " + ", ".join([one] * n),
        rows,
        len(columns),
    )


def _with_dates(row: Sequence[Any], dates: Sequence[int]) -> list[Any]:
    """``row`` with its ISO text at positions ``dates`` as dates (what a binary COPY takes)."""
    values = list(row)
    for k in dates:
        if isinstance(values[k], str):
            values[k] = dt.date.fromisoformat(values[k])
    return values


# PostgreSQL's binary COPY names each column's type; these are the types the bulk
# inserts write (a subclass before its base: BigInteger is an Integer)
_COPY_TYPES: tuple[tuple[type[sa.types.TypeEngine[Any]], str], ...] = (
    (sa.BigInteger, "int8"),
    (sa.SmallInteger, "int2"),
    (sa.Integer, "int4"),
    (sa.Boolean, "bool"),
    (sa.LargeBinary, "bytea"),
    (sa.Float, "float8"),
    (sa.Date, "date"),
    (sa.String, "text"),  # Text too; binary text and varchar are the same bytes
)


def _copy_types(table: sa.Table, columns: Sequence[str]) -> list[str] | None:
    """The binary COPY type of each of ``columns``; None if one has none here.

    Binary rather than text: the Bloom filters, digests and sealed blobs go as
    their bytes rather than as hex the server must parse (200,000 record rows,
    ad hoc: 1.2-1.35 s against 2.25-2.5 s, and less of the service's CPU)."""
    found: list[str] = []
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, sa.Float) and getattr(kind, "precision", None) is not None:
            return None  # a Float(precision) may be a float4
        for base, copy_type in _COPY_TYPES:
            if isinstance(kind, base):
                found.append(copy_type)
                break
        else:
            return None
    return found


def _sqlite_rows_a_statement(
    conn: Connection,
    statement: Callable[[int], str],
    rows: Sequence[tuple[Any, ...]],
    width: int,
    head: tuple[Any, ...] = (),
) -> None:
    """Run ``statement(n)`` (``head``'s parameters, then ``n`` rows of ``width``) over
    ``rows``, up to :data:`SQLITE_ROWS_PER_INSERT` rows a statement (fewer if the
    driver's limit on parameters is lower): one executemany of the full statements,
    then one statement of the rest, never a statement a row (the driver lets go of
    the interpreter lock in each statement's step and must win it back after)."""
    raw: Any = conn.connection.driver_connection
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per = max(1, min(SQLITE_ROWS_PER_INSERT, (limit - len(head)) // width))
    flat = chain.from_iterable
    full = len(rows) - len(rows) % per
    if full:
        conn.exec_driver_sql(
            statement(per), [(*head, *flat(rows[k : k + per])) for k in range(0, full, per)]
        )
    if full < len(rows):
        conn.exec_driver_sql(statement(len(rows) - full), (*head, *flat(rows[full:])))


def keep_records(
    conn: Connection, extract_id: str, kept: Sequence[tuple[int, bytes | bytearray]]
) -> None:
    """Mark records re-sent unchanged as held by ``extract_id``, each with its new sealed blob.

    ``kept`` is ``(record id, sealed identity)``. SQLite: an ``UPDATE ... FROM
    (VALUES ...)`` of up to :data:`SQLITE_ROWS_PER_INSERT` records a statement
    (as an executemany, each record was a statement whose step let go of the
    interpreter lock and waited to win it back: a refresh's kept records are
    most of its records). PostgreSQL: an executemany, which psycopg pipelines
    (one ``UPDATE ... FROM unnest`` of arrays took a third longer: 250,000
    records 14.1-15.6 s against 10.6-12.6 s).
    """
    if not kept:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "UPDATE records SET extract_id = %s, sealed_identity = %s WHERE id = %s",
            [(extract_id, sealed, rid) for rid, sealed in kept],
        )
        return
    _sqlite_rows_a_statement(
        conn,
        lambda n: (
            "UPDATE records SET extract_id = ?, sealed_identity = k.column2 FROM (VALUES "
            + ", ".join(["(?, ?)"] * n)
            + ") AS k WHERE records.id = k.column1"
        ),
        kept,
        2,
        (extract_id,),
    )


def delete_pairs(conn: Connection, table: sa.Table, pairs: Sequence[tuple[int, int]]) -> None:
    """Delete the rows of a pair table (links, review) keyed ``(record_a, record_b)`` in ``pairs``.

    PostgreSQL: one ``DELETE ... USING unnest`` of two array parameters; SQLite:
    a delete of up to :data:`SQLITE_ROWS_PER_INSERT` pairs a statement, each
    found on the primary key (a statement a pair waited, beside busy Python, to
    win back the interpreter lock after each step). Neither renders or converts
    parameters per pair in SQLAlchemy (that was most of the time of writing a
    large push's links).
    """
    if not pairs:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"DELETE FROM {table.name} AS t USING unnest(%s::bigint[], %s::bigint[]) AS k(a, b) "
            "WHERE t.record_a = k.a AND t.record_b = k.b",
            ([a for a, _ in pairs], [b for _, b in pairs]),
        )
        return
    # by rowid, each found on the key: SQLite scans the table for a row value IN (VALUES ...)
    _sqlite_rows_a_statement(
        conn,
        lambda n: (
            f"DELETE FROM {table.name} WHERE rowid IN (SELECT {table.name}.rowid FROM (VALUES "
            + ", ".join(["(?, ?)"] * n)
            + f") AS k JOIN {table.name} ON {table.name}.record_a = k.column1 "
            f"AND {table.name}.record_b = k.column2)"
        ),
        pairs,
        2,
    )


def analyze(conn: Connection, tables: Sequence[sa.Table]) -> None:
    """Bring the planner's statistics of ``tables`` up to date, cheaply.

    SQLite: ``ANALYZE`` with ``analysis_limit`` (each index sampled, not read
    whole); PostgreSQL: ``ANALYZE`` of each table (a fixed-size row sample).
    Without current statistics SQLite's planner drives reads of one person
    from the ``active`` index, scanning every active record.
    """
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {table.name}")
        return
    conn.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
    for table in tables:
        conn.exec_driver_sql(f"ANALYZE {table.name}")


def now_micros() -> int:
    """The current time in microseconds since the Unix epoch."""
    return int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000)


def iso(micros: int | None) -> str | None:
    """An ISO 8601 UTC time from microseconds since the epoch."""
    if micros is None:
        return None
    return dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC).isoformat()


_T = TypeVar("_T")


def retired_filters(
    conn: Connection, batch: int = 50_000
) -> Iterator[tuple[list[int], list[bytes], list[str]]]:
    """The retired records (kept, inactive: their agency no longer sends them) in slices
    of ``batch``: ids, person filters and exact tokens (JSON), for subject access."""
    r = records
    result = conn.execution_options(yield_per=batch).execute(
        sa.select(r.c.id, r.c.clk, r.c.exact_tokens).where(~r.c.active).order_by(r.c.id)
    )
    for part in result.partitions():
        yield (
            [int(row.id) for row in part],
            [bytes(row.clk) for row in part],
            [str(row.exact_tokens) for row in part],
        )


class RecordVersion(NamedTuple):
    """Which agency record a stored record is a version of, and whose it is."""

    agency_id: str
    record_ref: str
    seq: int  # arrival order: of a changed record's versions the latest is the highest
    person_id: str | None  # its person, or the one it last belonged to if retired


def record_versions(conn: Connection, ids: Sequence[int]) -> dict[int, RecordVersion]:
    """Each of ``ids``' agency, record ref, arrival order and person."""
    r, rp = records, record_person
    out: dict[int, RecordVersion] = {}
    for part in key_chunks(conn, sorted(ids)):
        rows = conn.execute(
            sa.select(r.c.id, r.c.agency_id, r.c.record_ref, r.c.seq, rp.c.person_id)
            .select_from(r.outerjoin(rp, rp.c.record_id == r.c.id))
            .where(key_in(conn, r.c.id, part))
        )
        for i, agency, ref, seq, person in rows:
            pid = None if person is None else str(person)
            out[int(i)] = RecordVersion(str(agency), str(ref), int(seq or 0), pid)
    return out


def chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def key_chunks(conn: Connection, items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """``items`` in slices for :func:`key_in` on ``conn``: :data:`CHUNK` on SQLite,
    :data:`ARRAY_CHUNK` on PostgreSQL (one array parameter, whatever its length)."""
    return chunks(items, ARRAY_CHUNK if conn.dialect.name == "postgresql" else CHUNK)


def key_in(conn: Connection, column: sa.Column[Any], values: Sequence[Any]) -> Any:
    """``column IN values`` for a slice from :func:`key_chunks`.

    PostgreSQL: ``column = ANY(array)``, one parameter, so neither SQLAlchemy nor
    psycopg renders and converts a placeholder per value (that was most of the
    time of an apply's id look-ups there); SQLite: an ``IN`` list.
    """
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


# --- agency registry -------------------------------------------------------------------


@dataclass(frozen=True)
class Agency:
    """A registered agency: its signing key and the extract types it may send."""

    agency_id: str
    idx: int
    public_key: bytes
    key_id: str
    extract_types: tuple[str, ...]
    registered_at: int


def _agency(row: Any) -> Agency:
    return Agency(
        agency_id=str(row.agency_id),
        idx=int(row.idx),
        public_key=bytes(row.public_key),
        key_id=str(row.key_id),
        extract_types=tuple(json.loads(row.extract_types)),
        registered_at=int(row.registered_at),
    )


def add_agency(
    engine: Engine, agency_id: str, public_key: bytes, key_id: str, types: Iterable[str]
) -> Agency:
    """Register an agency (or replace its key and types if it exists)."""
    type_list = sorted(set(types))
    if not type_list:
        raise ConfigError(f"agency {agency_id!r}: give at least one allowed extract type")
    try:
        with engine.begin() as conn:
            existing = conn.execute(
                sa.select(agencies).where(agencies.c.agency_id == agency_id)
            ).first()
            values = {
                "public_key": public_key,
                "key_id": key_id,
                "extract_types": json.dumps(type_list),
            }
            if existing is None:
                top = conn.execute(sa.select(sa.func.max(agencies.c.idx))).scalar_one_or_none()
                conn.execute(
                    agencies.insert().values(
                        agency_id=agency_id,
                        idx=(top or 0) + 1,
                        registered_at=now_micros(),
                        **values,
                    )
                )
            else:
                conn.execute(
                    agencies.update().where(agencies.c.agency_id == agency_id).values(**values)
                )
    except IntegrityError as exc:
        raise StorageError(f"cannot register agency {agency_id!r}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot register agency {agency_id!r}: {exc}") from exc
    found = get_agency(engine, agency_id)
    assert found is not None
    return found


def get_agency(engine: Engine | Connection, agency_id: str) -> Agency | None:
    """The registered agency ``agency_id``, or None."""
    query = sa.select(agencies).where(agencies.c.agency_id == agency_id)
    try:
        if isinstance(engine, Connection):
            row = engine.execute(query).first()
        else:
            with engine.connect() as conn:
                row = conn.execute(query).first()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read agency {agency_id!r}: {exc}") from exc
    return None if row is None else _agency(row)


def list_agencies(engine: Engine) -> list[Agency]:
    """Every registered agency in registration order."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(agencies).order_by(agencies.c.idx)).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot list agencies: {exc}") from exc
    return [_agency(r) for r in rows]


# --- reads for the API and CLI (pseudonymous only; never sealed identities) -------------


def _read(engine: Engine, what: str) -> Connection:
    try:
        return engine.connect()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read {what}: database unavailable: {exc}") from exc


def _records_json(conn: Connection, record_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Pseudonymous view of records: agency, ref, coarse attributes, indicators."""
    out: list[dict[str, Any]] = []
    inds: dict[int, list[dict[str, Any]]] = {}
    for part in chunks(list(record_ids)):
        for i in conn.execute(
            sa.select(
                indicators.c.record_id, indicators.c.type, indicators.c.value, indicators.c.date
            )
            .where(indicators.c.record_id.in_(part))
            .order_by(indicators.c.id)
        ):
            inds.setdefault(int(i.record_id), []).append(
                {"type": i.type, "value": i.value, "date": i.date.isoformat()}
            )
        cols = (
            records.c.id,
            records.c.agency_id,
            records.c.record_ref,
            records.c.extract_id,
            records.c.active,
            records.c.age,
            records.c.age_band,
            records.c.sex,
            records.c.district,
            records.c.extract_date,
        )
        for r in conn.execute(
            sa.select(*cols).where(records.c.id.in_(part)).order_by(records.c.id)
        ):
            out.append(
                {
                    "record_id": int(r.id),
                    "agency_id": r.agency_id,
                    "record_ref": r.record_ref,
                    "extract_id": r.extract_id,
                    "active": bool(r.active),
                    "age": r.age,
                    "age_band": r.age_band,
                    "sex": r.sex,
                    "postcode_district": r.district,
                    "extract_date": r.extract_date.isoformat(),
                    "indicators": inds.get(int(r.id), []),
                }
            )
    return out


def _active_records_of(conn: Connection, person_ids: Sequence[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for part in chunks(list(person_ids)):
        q = (
            sa.select(record_person.c.person_id, record_person.c.record_id)
            .join(records, records.c.id == record_person.c.record_id)
            .where(record_person.c.person_id.in_(part), records.c.active)
            .order_by(record_person.c.record_id)
        )
        for pid, rid in conn.execute(q):
            out.setdefault(str(pid), []).append(int(rid))
    return out


def list_persons(engine: Engine, after: str | None, limit: int) -> dict[str, Any]:
    """A page of current persons with their household and number of active records."""
    try:
        with _read(engine, "persons") as conn:
            # one statement: the page by key first (a limited subquery, so that no
            # planner joins the whole table before limiting), then each person's
            # household and a count of their active records by the person index
            page = sa.select(persons.c.id).where(persons.c.retired_run.is_(None))
            if after is not None:
                page = page.where(persons.c.id > after)
            ids = page.order_by(persons.c.id).limit(limit).subquery()
            active = (
                sa.select(sa.func.count())
                .select_from(record_person.join(records, records.c.id == record_person.c.record_id))
                .where(record_person.c.person_id == ids.c.id, records.c.active)
                .scalar_subquery()
            )
            q = sa.select(ids.c.id, person_household.c.household_id, active).select_from(
                ids.outerjoin(person_household, person_household.c.person_id == ids.c.id)
            )
            rows = conn.execute(q.order_by(ids.c.id)).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot list persons: {exc}") from exc
    return {
        "persons": [
            {
                "person_id": str(p),
                "household_id": None if h is None else str(h),
                "records": int(n),
            }
            for p, h, n in rows
        ],
        "next_after": str(rows[-1][0]) if len(rows) == limit else None,
    }


def _households_of(conn: Connection, person_ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in chunks(list(person_ids)):
        q = sa.select(person_household).where(person_household.c.person_id.in_(part))
        out.update({str(r.person_id): str(r.household_id) for r in conn.execute(q)})
    return out


def _retirement(conn: Connection, kind: str, from_id: str) -> dict[str, Any]:
    events = conn.execute(
        sa.select(id_events.c.kind, id_events.c.to_id, id_events.c.run_id)
        .where(id_events.c.from_id == from_id, id_events.c.kind.like(f"{kind}%"))
        .order_by(id_events.c.id)
    ).all()
    return {"events": [{"kind": e.kind, "to": e.to_id, "run_id": e.run_id} for e in events]}


def household_id_of(family_id: str) -> str:
    """The household id of a family id (the inverse of :func:`family_id_of`)."""
    return "hh_" + family_id.split("_", 1)[1]


def successors(conn: Connection, any_id: str) -> tuple[str, list[str]] | None:
    """Where an id ever issued lives now: (its state, the current ids it resolves to).

    ``per_`` ids resolve through person merges and splits, ``hh_`` and ``fam_`` ids
    through household ones (a family id is its household's). The state is
    ``current`` (it resolves to itself), ``merged`` or ``split`` (retired, its
    records now under the ids given), or ``retired`` (nothing of it is held any
    more; no ids). None if the id was never issued.
    """
    out: Callable[[str], str] = str
    if any_id.startswith("fam_"):
        table, kind, start, out = households, "household", household_id_of(any_id), family_id_of
    elif any_id.startswith("hh_"):
        table, kind, start = households, "household", any_id
    elif any_id.startswith("per_"):
        table, kind, start = persons, "person", any_id
    else:
        return None
    row = conn.execute(sa.select(table.c.retired_run).where(table.c.id == start)).first()
    if row is None:
        return None
    if row.retired_run is None:
        return "current", [out(start)]
    seen = {start}
    frontier = [start]
    found: set[str] = set()
    how = "retired"
    while frontier:
        q = sa.select(id_events.c.kind, id_events.c.to_id).where(
            id_events.c.from_id.in_(frontier),
            id_events.c.kind.in_([f"{kind}_merge", f"{kind}_split"]),
            id_events.c.to_id.is_not(None),
        )
        nxt: list[str] = []
        for k, to in conn.execute(q):
            if how == "retired" or k.endswith("merge"):
                how = "merged" if k.endswith("merge") else "split"
            if to not in seen:
                seen.add(to)
                nxt.append(str(to))
        if nxt:
            live = {
                str(i)
                for (i,) in conn.execute(
                    sa.select(table.c.id).where(table.c.id.in_(nxt), table.c.retired_run.is_(None))
                )
            }
            found |= live
        frontier = nxt
    return how if found else "retired", sorted(out(x) for x in found)


def members_of(conn: Connection, family_id: str) -> list[str]:
    """The current persons of a family (its household's members)."""
    ph = person_household
    q = sa.select(ph.c.person_id).where(ph.c.household_id == household_id_of(family_id))
    return sorted(str(p) for (p,) in conn.execute(q))


def resolve_id(engine: Engine, any_id: str) -> dict[str, Any]:
    """:func:`successors` as the API answers it; NotFound for an id never issued."""
    try:
        with _read(engine, "id") as conn:
            got = successors(conn, any_id)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot resolve {any_id!r}: {exc}") from exc
    if got is None:
        raise NotFound(f"no id {any_id!r} was ever issued")
    state, current = got
    return {"id": any_id, "state": state, "current": current}


def get_person(engine: Engine, person_id: str) -> dict[str, Any]:
    """A person with household and linked active records (with indicators)."""
    try:
        with _read(engine, "person") as conn:
            row = conn.execute(sa.select(persons).where(persons.c.id == person_id)).first()
            if row is None:
                raise NotFound(f"no person {person_id!r}")
            recs = _active_records_of(conn, [person_id]).get(person_id, [])
            body: dict[str, Any] = {
                "person_id": person_id,
                "created_run": row.created_run,
                "retired_run": row.retired_run,
                "household_id": _households_of(conn, [person_id]).get(person_id),
                "records": _records_json(conn, recs),
            }
            if row.retired_run is not None:
                body.update(_retirement(conn, "person", person_id))
            return body
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read person {person_id!r}: {exc}") from exc


def list_households(engine: Engine, after: str | None, limit: int) -> dict[str, Any]:
    """A page of current households with their number of persons."""
    try:
        with _read(engine, "households") as conn:
            q = sa.select(households.c.id).where(households.c.retired_run.is_(None))
            if after is not None:
                q = q.where(households.c.id > after)
            ids = [str(r[0]) for r in conn.execute(q.order_by(households.c.id).limit(limit))]
            counts: dict[str, int] = {}
            for part in chunks(ids):
                q2 = (
                    sa.select(person_household.c.household_id, sa.func.count())
                    .where(person_household.c.household_id.in_(part))
                    .group_by(person_household.c.household_id)
                )
                counts.update({str(h): int(n) for h, n in conn.execute(q2)})
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot list households: {exc}") from exc
    return {
        "households": [{"household_id": h, "persons": counts.get(h, 0)} for h in ids],
        "next_after": ids[-1] if len(ids) == limit else None,
    }


def get_household(engine: Engine, household_id: str) -> dict[str, Any]:
    """A household with its persons and each person's active records."""
    try:
        with _read(engine, "household") as conn:
            row = conn.execute(sa.select(households).where(households.c.id == household_id)).first()
            if row is None:
                raise NotFound(f"no household {household_id!r}")
            pids = [
                str(p)
                for (p,) in conn.execute(
                    sa.select(person_household.c.person_id)
                    .where(person_household.c.household_id == household_id)
                    .order_by(person_household.c.person_id)
                )
            ]
            recs = _active_records_of(conn, pids)
            return {
                "household_id": household_id,
                "created_run": row.created_run,
                "retired_run": row.retired_run,
                "persons": [
                    {"person_id": p, "records": _records_json(conn, recs.get(p, []))} for p in pids
                ],
            }
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read household {household_id!r}: {exc}") from exc


def _pair_refs(conn: Connection, rows: Sequence[Any]) -> Callable[[int], dict[str, Any]]:
    """Record id -> ``{record_id, agency_id, record_ref}`` for the records of ``rows``."""
    ids = sorted({int(r.record_a) for r in rows} | {int(r.record_b) for r in rows})
    refs: dict[int, tuple[str, str]] = {}
    for part in chunks(ids):
        q = sa.select(records.c.id, records.c.agency_id, records.c.record_ref).where(
            records.c.id.in_(part)
        )
        refs.update({int(i): (str(a), str(r)) for i, a, r in conn.execute(q)})

    def ref(rid: int) -> dict[str, Any]:
        agency, record_ref = refs.get(rid, ("?", "?"))
        return {"record_id": rid, "agency_id": agency, "record_ref": record_ref}

    return ref


def _pairs_json(conn: Connection, table: sa.Table, rows: Sequence[Any]) -> list[dict[str, Any]]:
    ref = _pair_refs(conn, rows)
    return [
        {
            "a": ref(int(r.record_a)),
            "b": ref(int(r.record_b)),
            "score": r.score,
            "evidence": json.loads(r.evidence),
            "run_id": r.run_id,
        }
        for r in rows
    ]


def record_links(engine: Engine, agency_id: str, record_ref: str) -> dict[str, Any]:
    """Links and review candidates of the active record ``(agency_id, record_ref)``."""
    try:
        with _read(engine, "links") as conn:
            rid = conn.execute(
                sa.select(records.c.id).where(
                    records.c.agency_id == agency_id,
                    records.c.record_ref == record_ref,
                    records.c.active,
                )
            ).scalar_one_or_none()
            if rid is None:
                raise NotFound(f"no active record {record_ref!r} of agency {agency_id!r}")
            out: dict[str, Any] = {"record_id": int(rid)}
            for name, table in (("links", links), ("review", review)):
                rows = conn.execute(
                    sa.select(table)
                    .where(sa.or_(table.c.record_a == rid, table.c.record_b == rid))
                    .order_by(table.c.score.desc())
                ).all()
                out[name] = _pairs_json(conn, table, rows)
            person = conn.execute(
                sa.select(record_person.c.person_id).where(record_person.c.record_id == rid)
            ).scalar_one_or_none()
            out["person_id"] = person
            d = review_decisions
            out["decisions"] = [
                {
                    "record_a": int(x.record_a),
                    "record_b": int(x.record_b),
                    "version": int(x.version),
                    "decision": x.decision,
                    "reason": x.reason,
                    "decided_at": iso(int(x.decided_at)),
                    "decided_by": x.decided_by,
                }
                for x in conn.execute(
                    sa.select(d)
                    .where(sa.or_(d.c.record_a == rid, d.c.record_b == rid))
                    .order_by(d.c.id)
                )
            ]
            return out
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read links of {record_ref!r}: {exc}") from exc


class ReviewImpactRow(NamedTuple):
    """A review pair's impact in a cycle: kind (None: not assessed) and families JSON."""

    record_a: int
    record_b: int
    impact: str | None
    detail: str | None


def review_pair_persons(conn: Connection) -> list[tuple[int, int, str | None, str | None]]:
    """Every review pair with the current person of each of its records (None: none)."""
    pa, pb = record_person.alias("pa"), record_person.alias("pb")
    q = (
        sa.select(review.c.record_a, review.c.record_b, pa.c.person_id, pb.c.person_id)
        .outerjoin(pa, pa.c.record_id == review.c.record_a)
        .outerjoin(pb, pb.c.record_id == review.c.record_b)
        .order_by(review.c.record_a, review.c.record_b)
    )
    return [
        (int(a), int(b), None if x is None else str(x), None if y is None else str(y))
        for a, b, x, y in conn.execute(q, execution_options={"yield_per": 20_000})
    ]


def write_review_impacts(conn: Connection, cycle_id: int, rows: Sequence[ReviewImpactRow]) -> None:
    """Store each pair's impact in cycle ``cycle_id`` and its queue rank (0: impactful)."""
    stmt = (
        review.update()
        .where(review.c.record_a == sa.bindparam("a_"), review.c.record_b == sa.bindparam("b_"))
        .values(
            queue_rank=sa.bindparam("rank_"),
            impact=sa.bindparam("impact_"),
            impact_cycle=sa.bindparam("cycle_"),
            impact_detail=sa.bindparam("detail_"),
        )
    )
    for part in chunks(rows, 5 * CHUNK):
        conn.execute(
            stmt,
            [
                {
                    "a_": r.record_a,
                    "b_": r.record_b,
                    "rank_": 0 if r.impact not in (None, "none") else 1,
                    "impact_": r.impact,
                    "cycle_": cycle_id if r.impact is not None else None,
                    "detail_": r.detail,
                }
                for r in part
            ],
        )


def _latest_cycle_id(conn: Connection) -> int | None:
    """The newest assessment cycle's id (the review queue's impacts are as of it), or None."""
    # the programme's table, imported here: programme._store builds on this module
    from .programme._store import cycles

    found = conn.execute(sa.select(sa.func.max(cycles.c.id))).scalar()
    return None if found is None else int(found)


class ReviewRow(NamedTuple):
    """One pair of the review queue as stored, with its records' agency and ref."""

    a: dict[str, Any]
    b: dict[str, Any]
    score: float
    uncertainty: float
    impact: str | None
    impact_cycle: int | None
    impact_detail: str | None
    evidence: str
    run_id: int


@dataclass(frozen=True)
class ReviewPage:
    """A page of the review queue and the latest assessment cycle's id."""

    cycle_id: int | None
    rows: list[ReviewRow]


def list_review(
    engine: Engine, offset: int, limit: int, *, impactful_only: bool = False
) -> ReviewPage:
    """A page of the review queue in its stored order: queue rank, then uncertainty."""
    q = sa.select(review)
    if impactful_only:
        q = q.where(review.c.queue_rank == 0)
    q = q.order_by(review.c.queue_rank, review.c.uncertainty, review.c.record_a, review.c.record_b)
    try:
        with _read(engine, "review") as conn:
            rows = conn.execute(q.offset(offset).limit(limit)).all()
            latest = _latest_cycle_id(conn)
            ref = _pair_refs(conn, rows)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read review candidates: {exc}") from exc
    out = []
    for r in rows:
        out.append(
            ReviewRow(
                a=ref(int(r.record_a)),
                b=ref(int(r.record_b)),
                score=float(r.score),
                uncertainty=float(r.uncertainty),
                impact=r.impact,
                impact_cycle=r.impact_cycle,
                impact_detail=r.impact_detail,
                evidence=str(r.evidence),
                run_id=int(r.run_id),
            )
        )
    return ReviewPage(None if latest is None else int(latest), out)


@dataclass(frozen=True)
class ReviewStatistics:
    """Raw counts of the review queue (``_review.review_summary`` shapes them)."""

    pairs: int
    cycle_id: int | None
    by_impact: dict[str | None, int]
    impactful_details: list[str]
    bands: list[int]  # pairs per band of ``edges``
    levels: dict[tuple[str, str], int]  # (comparison, level) -> pairs
    unexplained: int


def _comparison_levels(conn: Connection) -> tuple[dict[tuple[str, str], int], int]:
    """Pairs per (comparison, level) of the evidence JSON, and pairs with no comparisons."""
    if conn.dialect.name == "postgresql":
        levels_sql = (
            "SELECT j.key, j.value ->> 'level', count(*) FROM review, "
            "jsonb_each(CAST(review.evidence AS jsonb) -> 'comparisons') AS j GROUP BY 1, 2"
        )
        missing_sql = (
            "SELECT count(*) FROM review "
            "WHERE CAST(review.evidence AS jsonb) -> 'comparisons' IS NULL"
        )
    else:
        levels_sql = (
            "SELECT j.key, json_extract(j.value, '$.level'), count(*) FROM review, "
            "json_each(review.evidence, '$.comparisons') AS j GROUP BY 1, 2"
        )
        missing_sql = (
            "SELECT count(*) FROM review WHERE json_type(review.evidence, '$.comparisons') IS NULL"
        )
    levels = {
        (str(name), "(none)" if level is None else str(level)): int(n)
        for name, level, n in conn.execute(sa.text(levels_sql))
    }
    return levels, int(conn.execute(sa.text(missing_sql)).scalar_one())


def review_statistics(engine: Engine, edges: Sequence[float]) -> ReviewStatistics:
    """Counts of the review queue: by impact, per probability band of ``edges``, per level."""
    band = sa.case(
        *((review.c.score < hi, k) for k, hi in enumerate(edges[1:-1])),
        else_=len(edges) - 2,
    ).label("band")
    try:
        with _read(engine, "review statistics") as conn:
            pairs = int(conn.execute(sa.select(sa.func.count()).select_from(review)).scalar_one())
            latest = _latest_cycle_id(conn)
            by_impact: dict[str | None, int] = {
                None if i is None else str(i): int(n)
                for i, n in conn.execute(
                    sa.select(review.c.impact, sa.func.count()).group_by(review.c.impact)
                )
            }
            details = [
                str(d)
                for (d,) in conn.execute(
                    sa.select(review.c.impact_detail).where(review.c.queue_rank == 0)
                )
            ]
            bands = [0] * (len(edges) - 1)
            for k, n in conn.execute(sa.select(band, sa.func.count()).group_by(band)):
                bands[int(k)] = int(n)
            levels, unexplained = _comparison_levels(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot count review candidates: {exc}") from exc
    return ReviewStatistics(
        pairs=pairs,
        cycle_id=None if latest is None else int(latest),
        by_impact=by_impact,
        impactful_details=details,
        bands=bands,
        levels=levels,
        unexplained=unexplained,
    )


# --- clerical decisions --------------------------------------------------------------------


class DecisionRow(NamedTuple):
    """One stored decision with its pair's records and their current persons."""

    id: int
    a: dict[str, Any]
    b: dict[str, Any]
    version: int
    decision: str
    reason: str
    score: float | None
    evidence: str | None
    decided_at: int
    decided_by: str
    person_a: str | None
    person_b: str | None
    current: bool  # the pair's highest version: the decision in force


def record_decision(
    engine: Engine,
    record_a: int,
    record_b: int,
    decision: str,
    reason: str,
    actor: str,
    *,
    change: bool,
) -> int:
    """Store a decision on the pair (``record_a`` < ``record_b``) in one guarded transaction.

    Both records must be active (else :class:`NotFound`). A pair already decided
    takes a new decision only as an explicit ``change`` to a different one, and
    a change needs a decision to change (else :class:`ConflictError`); of two
    concurrent deciders the unique (pair, version) lets exactly one commit.
    The pair leaves the review queue. Returns the new decision's id.
    """
    d = review_decisions
    try:
        with engine.begin() as conn:
            active = {
                int(x)
                for (x,) in conn.execute(
                    sa.select(records.c.id).where(
                        records.c.id.in_((record_a, record_b)), records.c.active
                    )
                )
            }
            for rid in (record_a, record_b):
                if rid not in active:
                    raise NotFound(f"record {rid} is not an active record")
            last = conn.execute(
                sa.select(d.c.version, d.c.decision)
                .where(d.c.record_a == record_a, d.c.record_b == record_b)
                .order_by(d.c.version.desc())
                .limit(1)
            ).first()
            pair = f"pair ({record_a}, {record_b})"
            if last is not None and not change:
                raise ConflictError(
                    f"{pair} was already decided {last.decision} (version {last.version}); "
                    "send change=true to record a change"
                )
            if last is None and change:
                raise ConflictError(f"{pair} has no decision to change")
            if last is not None and last.decision == decision:
                raise ConflictError(f"{pair} is already decided {decision}")
            held = None
            for table in (review, links):
                held = conn.execute(
                    sa.select(table.c.score, table.c.evidence).where(
                        table.c.record_a == record_a, table.c.record_b == record_b
                    )
                ).first()
                if held is not None:
                    break
            new_id = conn.execute(
                d.insert().values(
                    record_a=record_a,
                    record_b=record_b,
                    version=1 if last is None else int(last.version) + 1,
                    decision=decision,
                    reason=reason,
                    score=None if held is None else float(held.score),
                    evidence=None if held is None else str(held.evidence),
                    decided_at=now_micros(),
                    decided_by=actor,
                )
            ).inserted_primary_key
            conn.execute(
                review.delete().where(review.c.record_a == record_a, review.c.record_b == record_b)
            )
            assert new_id is not None
            return int(new_id[0])
    except IntegrityError as exc:
        raise ConflictError(
            f"pair ({record_a}, {record_b}) was decided by someone else at the same time; "
            "read its decision and send a change if it is wrong"
        ) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot store the decision on ({record_a}, {record_b}): {exc}") from exc


def _latest_versions() -> Any:
    d = review_decisions
    return (
        sa.select(d.c.record_a, d.c.record_b, sa.func.max(d.c.version).label("version"))
        .group_by(d.c.record_a, d.c.record_b)
        .subquery("latest")
    )


def has_decisions(conn: Connection) -> bool:
    """Whether any clerical decision was ever recorded (else none can be in force)."""
    return conn.execute(sa.select(review_decisions.c.id).limit(1)).first() is not None


def current_decisions(conn: Connection) -> dict[tuple[int, int], str]:
    """The decision in force on every decided pair: (record a, record b) -> decision.

    A decision is about two agencies' source records, not about the row ids
    they had that day: an agency's refresh stores a changed record under a new
    id, so each side is the record that now stands for the same (agency, record
    ref) when there is one (the later decision wins where two land on one pair).
    """
    d, latest = review_decisions, _latest_versions()
    q = (
        sa.select(d.c.record_a, d.c.record_b, d.c.decision)
        .join(
            latest,
            sa.and_(
                d.c.record_a == latest.c.record_a,
                d.c.record_b == latest.c.record_b,
                d.c.version == latest.c.version,
            ),
        )
        .order_by(d.c.id)
    )
    decided = [(int(a), int(b), str(x)) for a, b, x in conn.execute(q)]
    now = _standing_for(conn, {r for a, b, _ in decided for r in (a, b)})
    out: dict[tuple[int, int], str] = {}
    for a, b, x in decided:
        a2, b2 = now.get(a, a), now.get(b, b)
        if a2 != b2:
            out[(min(a2, b2), max(a2, b2))] = x
    return out


def _standing_for(conn: Connection, record_ids: Iterable[int]) -> dict[int, int]:
    """Record id -> the active record with the same agency and record ref (if another)."""
    old, now = records.alias("old"), records.alias("now")
    out: dict[int, int] = {}
    for part in chunks(sorted(record_ids)):
        q = (
            sa.select(old.c.id, now.c.id)
            .join(
                now,
                sa.and_(
                    now.c.agency_id == old.c.agency_id,
                    now.c.record_ref == old.c.record_ref,
                    now.c.active == sa.true(),
                ),
            )
            .where(old.c.id.in_(part), old.c.id != now.c.id)
        )
        out.update({int(a): int(b) for a, b in conn.execute(q)})
    return out


def list_decisions(
    engine: Engine,
    *,
    record_id: int | None = None,
    current_only: bool = False,
    after: int = 0,
    limit: int | None = None,
) -> list[DecisionRow]:
    """Stored decisions in the order they were made (ids above ``after``), with persons now."""
    d, latest = review_decisions, _latest_versions()
    pa, pb = record_person.alias("pa"), record_person.alias("pb")
    q = (
        sa.select(
            d,
            pa.c.person_id.label("pa"),
            pb.c.person_id.label("pb"),
            latest.c.version.label("latest_version"),
        )
        .join(latest, sa.and_(d.c.record_a == latest.c.record_a, d.c.record_b == latest.c.record_b))
        .outerjoin(pa, pa.c.record_id == d.c.record_a)
        .outerjoin(pb, pb.c.record_id == d.c.record_b)
        .where(d.c.id > after)
        .order_by(d.c.id)
    )
    if record_id is not None:
        q = q.where(sa.or_(d.c.record_a == record_id, d.c.record_b == record_id))
    if current_only:
        q = q.where(d.c.version == latest.c.version)
    if limit is not None:
        q = q.limit(limit)
    try:
        with _read(engine, "review decisions") as conn:
            rows = conn.execute(q).all()
            ref = _pair_refs(conn, rows)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read review decisions: {exc}") from exc
    return [
        DecisionRow(
            id=int(r.id),
            a=ref(int(r.record_a)),
            b=ref(int(r.record_b)),
            version=int(r.version),
            decision=str(r.decision),
            reason=str(r.reason),
            score=None if r.score is None else float(r.score),
            evidence=r.evidence,
            decided_at=int(r.decided_at),
            decided_by=str(r.decided_by),
            person_a=r.pa,
            person_b=r.pb,
            current=int(r.version) == int(r.latest_version),
        )
        for r in rows
    ]


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.id,
        "kind": r.kind,
        "status": r.status,
        "agency_id": r.agency_id,
        "extract_id": r.extract_id,
        "started_at": iso(r.started_at),
        "finished_at": iso(r.finished_at),
        "stats": json.loads(r.stats),
        "error": r.error,
    }


def list_runs(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """The most recent linkage runs, newest first."""
    try:
        with _read(engine, "runs") as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(limit)).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read runs: {exc}") from exc
    return [_run_json(r) for r in rows]


def latest_match_model(conn: Connection) -> dict[str, Any] | None:
    """The match model the newest run that estimated one stored (its parameters), or None.

    Each estimated model version is kept in the stats of the run that made it
    (``stats.match_model``), so every version stays readable beside the run.
    """
    row = conn.execute(
        sa.select(runs.c.stats)
        .where(runs.c.status == "applied", runs.c.stats.like('%"match_model_id"%'))
        .order_by(runs.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    found = json.loads(row.stats).get("match_model")
    return found if isinstance(found, dict) else None


def get_run(engine: Engine, run_id: int) -> dict[str, Any]:
    """One run by id."""
    try:
        with _read(engine, "run") as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read run {run_id}: {exc}") from exc
    if row is None:
        raise NotFound(f"no run {run_id}")
    return _run_json(row)


def statistics(engine: Engine) -> dict[str, Any]:
    """Counts of records per agency, persons, households, links, review and runs."""

    def count(conn: Connection, table: sa.Table, *where: Any) -> int:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )

    try:
        with _read(engine, "statistics") as conn:
            per_agency = {
                str(a): int(n)
                for a, n in conn.execute(
                    sa.select(records.c.agency_id, sa.func.count())
                    .where(records.c.active)
                    .group_by(records.c.agency_id)
                    .order_by(records.c.agency_id)
                )
            }
            last = conn.execute(
                sa.select(runs)
                .where(runs.c.status == "applied")
                .order_by(runs.c.id.desc())
                .limit(1)
            ).first()
            return {
                "active_records": sum(per_agency.values()),
                "active_records_by_agency": per_agency,
                "retired_records": count(conn, records, sa.not_(records.c.active)),
                "persons": count(conn, persons, persons.c.retired_run.is_(None)),
                "households": count(conn, households, households.c.retired_run.is_(None)),
                "links": count(conn, links),
                "review_candidates": count(conn, review),
                "runs": count(conn, runs),
                "failed_runs": count(conn, runs, runs.c.status == "failed"),
                "last_run": None if last is None else _run_json(last),
            }
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot compute statistics: {exc}") from exc


def ping(engine: Engine) -> None:
    """StorageError unless the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StorageError(f"database unavailable: {exc}") from exc


# --- bulk export: one keyset page at a time (``_export`` streams them) --------------------
#
# Each page is one short read on its own connection, keyed on the table's primary key
# (``id > after``, ``(record_a, record_b) > after``), so an export of any size holds
# one page in memory, never a long read transaction, and a push between two pages
# neither repeats nor skips a row that exists throughout (rows added or retired
# meanwhile may or may not appear).


def export_persons_page(engine: Engine, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Current persons with ids above ``after`` (at most ``limit``): household, active records."""
    try:
        with _read(engine, "persons") as conn:
            q = sa.select(persons.c.id).where(persons.c.retired_run.is_(None))
            if after is not None:
                q = q.where(persons.c.id > after)
            ids = [str(p) for (p,) in conn.execute(q.order_by(persons.c.id).limit(limit))]
            # Two primary-key/index reads, not a join: SQLite's planner would drive a
            # join (or ``id IN ... AND active``) from the ``active`` index and scan every
            # active record for each page.
            rp = record_person
            person_of: dict[int, str] = {}
            for part in chunks(ids):
                q2 = sa.select(rp.c.record_id, rp.c.person_id).where(rp.c.person_id.in_(part))
                person_of.update({int(r): str(p) for r, p in conn.execute(q2)})
            refs: dict[str, list[dict[str, Any]]] = {}
            for rids in chunks(sorted(person_of)):
                # ``active`` is filtered here, not in SQL, for the same reason
                q3 = (
                    sa.select(
                        records.c.id, records.c.agency_id, records.c.record_ref, records.c.active
                    )
                    .where(records.c.id.in_(rids))
                    .order_by(records.c.id)
                )
                for rid, agency_id, ref, active in conn.execute(q3):
                    if not active:
                        continue
                    refs.setdefault(person_of[int(rid)], []).append(
                        {"record_id": int(rid), "agency_id": str(agency_id), "record_ref": str(ref)}
                    )
            hh = _households_of(conn, ids)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot export persons after {after!r}: {exc}") from exc
    return [{"person_id": p, "household_id": hh.get(p), "records": refs.get(p, [])} for p in ids]


def export_households_page(engine: Engine, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Current households with ids above ``after`` (at most ``limit``) and their persons."""
    ph = person_household
    try:
        with _read(engine, "households") as conn:
            q = sa.select(households.c.id).where(households.c.retired_run.is_(None))
            if after is not None:
                q = q.where(households.c.id > after)
            ids = [str(h) for (h,) in conn.execute(q.order_by(households.c.id).limit(limit))]
            members: dict[str, list[str]] = {}
            for part in chunks(ids):
                q2 = (
                    sa.select(ph.c.household_id, ph.c.person_id)
                    .where(ph.c.household_id.in_(part))
                    .order_by(ph.c.household_id, ph.c.person_id)
                )
                for hid, pid in conn.execute(q2):
                    members.setdefault(str(hid), []).append(str(pid))
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot export households after {after!r}: {exc}") from exc
    return [{"household_id": h, "persons": members.get(h, [])} for h in ids]


def export_pairs_page(
    engine: Engine, kind: str, after: tuple[int, int] | None, limit: int
) -> list[dict[str, Any]]:
    """Pairs of ``links`` or ``review`` above ``after`` in (record a, record b) order.

    Each pair names its records by id, agency and record ref, with its score,
    evidence (decoded JSON) and run; a review pair also its uncertainty and impact.
    """
    table = {"links": links, "review": review}[kind]
    q = sa.select(table)
    if after is not None:
        q = q.where(sa.tuple_(table.c.record_a, table.c.record_b) > sa.tuple_(*after))
    q = q.order_by(table.c.record_a, table.c.record_b).limit(limit)
    try:
        with _read(engine, kind) as conn:
            rows = conn.execute(q).all()
            ref = _pair_refs(conn, rows)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot export {kind} after {after}: {exc}") from exc
    out = []
    for r in rows:
        row = {
            "a": ref(int(r.record_a)),
            "b": ref(int(r.record_b)),
            "score": float(r.score),
            "evidence": json.loads(r.evidence),
            "run_id": int(r.run_id),
        }
        if table is review:
            row["uncertainty"] = float(r.uncertainty)
            row["impact"] = r.impact
            row["impact_cycle"] = r.impact_cycle
        out.append(row)
    return out
