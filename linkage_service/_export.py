"""Bulk export of the linkage service's pseudonymous data, streamed in constant memory.

Five kinds (``protocols.EXPORT_KINDS``): current persons with their active
records' agency and record ref, current households with their persons, the
latest assessment cycle's families (members, score, eligibility, status now),
links and review pairs (records, probability, evidence). Rows are read one
keyset page at a time by the store modules and written as NDJSON (one row model
per line) or Parquet (a row group per :data:`ROW_GROUP` rows or so, the pairs'
evidence as a JSON text column), so memory holds one page and one row group
whatever the size of the export. The HTTP route and the CLI both call
:func:`stream`.

Must never: read a sealed identity or anything but the pseudonymous columns the
store's export pages return; hold more than a page and a row group of rows.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pydantic_core
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from protocols import (
    ExportFamily,
    ExportFormat,
    ExportHousehold,
    ExportKind,
    ExportPair,
    ExportPerson,
    ExportReviewPair,
)

from . import _store as store
from ._errors import ConfigError
from .programme import _store as pstore

__all__ = [
    "MEDIA_TYPES",
    "PAGE",
    "ROW_GROUP",
    "ROW_MODELS",
    "SCHEMAS",
    "Export",
    "export_pages",
    "parquet_row",
    "stream",
    "write_export",
]

PAGE = 1000  # rows per keyset page (one short read each)
ROW_GROUP = 16_384  # rows per Parquet row group
MEDIA_TYPES: dict[ExportFormat, str] = {
    "ndjson": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
ROW_MODELS: dict[ExportKind, type[BaseModel]] = {
    "persons": ExportPerson,
    "households": ExportHousehold,
    "families": ExportFamily,
    "links": ExportPair,
    "review": ExportReviewPair,
}

_REF = pa.struct(
    [
        pa.field("record_id", pa.int64(), nullable=False),
        pa.field("agency_id", pa.string(), nullable=False),
        pa.field("record_ref", pa.string(), nullable=False),
    ]
)
_PAIR = [
    pa.field("a", _REF, nullable=False),
    pa.field("b", _REF, nullable=False),
    pa.field("score", pa.float64(), nullable=False),
]
SCHEMAS: dict[ExportKind, pa.Schema] = {
    "persons": pa.schema(
        [
            pa.field("person_id", pa.string(), nullable=False),
            pa.field("household_id", pa.string()),
            pa.field("records", pa.list_(pa.field("item", _REF, nullable=False)), nullable=False),
        ]
    ),
    "households": pa.schema(
        [
            pa.field("household_id", pa.string(), nullable=False),
            pa.field("persons", pa.list_(pa.string()), nullable=False),
        ]
    ),
    "families": pa.schema(
        [
            pa.field("family_id", pa.string(), nullable=False),
            pa.field("household_id", pa.string(), nullable=False),
            pa.field("cycle_id", pa.int64(), nullable=False),
            pa.field("members", pa.list_(pa.string()), nullable=False),
            pa.field("eligible", pa.bool_(), nullable=False),
            pa.field("problems", pa.int64(), nullable=False),
            pa.field("score", pa.int64(), nullable=False),
            pa.field("rank", pa.int64(), nullable=False),
            pa.field("percentile", pa.float64(), nullable=False),
            pa.field("clearance_required", pa.int64(), nullable=False),
            pa.field("postcode_district", pa.string()),
            pa.field("status", pa.string()),
        ]
    ),
    "links": pa.schema(
        [
            *_PAIR,
            pa.field("evidence", pa.string(), nullable=False),  # JSON text
            pa.field("run_id", pa.int64(), nullable=False),
        ]
    ),
    "review": pa.schema(
        [
            *_PAIR,
            pa.field("uncertainty", pa.float64(), nullable=False),
            pa.field("impact", pa.string()),
            pa.field("impact_cycle", pa.int64()),
            pa.field("evidence", pa.string(), nullable=False),  # JSON text
            pa.field("run_id", pa.int64(), nullable=False),
        ]
    ),
}
"""The Parquet columns of each kind: the row model's fields, in its order."""

Page = list[dict[str, Any]]


def _keyed(
    read: Callable[[Any, int], Page], key: Callable[[dict[str, Any]], Any], page_size: int
) -> Iterator[Page]:
    """Pages of ``read(after, limit)`` until a short one, each keyed after the last row."""
    after = None
    while True:
        page = read(after, page_size)
        if page:
            yield page
        if len(page) < page_size:
            return
        after = key(page[-1])


def export_pages(engine: Engine, kind: ExportKind, page_size: int = PAGE) -> Iterator[Page]:
    """The rows of ``kind`` as store dicts, one keyset page at a time.

    Nothing is read until the first page is asked for. ``families`` are those of
    the cycle that is the latest when the first page is read (NotFound if none).
    """
    if page_size < 1:
        raise ConfigError(f"export page size must be at least 1, not {page_size}")
    if kind == "persons":
        yield from _keyed(
            lambda after, n: store.export_persons_page(engine, after, n),
            lambda r: r["person_id"],
            page_size,
        )
    elif kind == "households":
        yield from _keyed(
            lambda after, n: store.export_households_page(engine, after, n),
            lambda r: r["household_id"],
            page_size,
        )
    elif kind == "families":
        cycle_id = pstore.latest_cycle_id(engine)
        yield from _keyed(
            lambda after, n: pstore.export_families_page(engine, cycle_id, after, n),
            lambda r: r["family_id"],
            page_size,
        )
    else:
        yield from _keyed(
            lambda after, n: store.export_pairs_page(engine, kind, after, n),
            lambda r: (r["a"]["record_id"], r["b"]["record_id"]),
            page_size,
        )


class Export:
    """A started export: iterate it for its chunks of bytes; ``rows`` counts rows so far."""

    def __init__(self, kind: ExportKind, fmt: ExportFormat, pages: Iterator[Page]) -> None:
        self.kind = kind
        self.format = fmt
        self.media_type = MEDIA_TYPES[fmt]
        self.rows = 0
        self._pages = pages

    def _models(self) -> Iterator[list[BaseModel]]:
        model = ROW_MODELS[self.kind]
        for page in self._pages:
            models = [model.model_validate(r) for r in page]
            self.rows += len(models)
            yield models

    def __iter__(self) -> Iterator[bytes]:
        if self.format == "ndjson":
            return _ndjson(self._models())
        return _parquet(self.kind, self._models())


def stream(engine: Engine, kind: ExportKind, fmt: ExportFormat, *, page_size: int = PAGE) -> Export:
    """The export of ``kind`` in ``fmt``, to iterate once as chunks of bytes.

    The first page is read before this returns, so a missing cycle or an
    unavailable database is raised here (as a ``LinkageError``), not mid-stream.
    Each chunk is one page (NDJSON) or one row group (Parquet).
    """
    pages = export_pages(engine, kind, page_size)
    first = next(pages, [])
    return Export(kind, fmt, itertools.chain([first], pages))


def _ndjson(pages: Iterator[list[BaseModel]]) -> Iterator[bytes]:
    for page in pages:
        if page:
            yield b"".join(r.model_dump_json().encode() + b"\n" for r in page)


class _Sink(io.RawIOBase):
    """A write-only file the Parquet writer writes to and :meth:`drain` empties."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def parquet_row(row: BaseModel) -> dict[str, Any]:
    """A row model as a Parquet row: its JSON form, with ``evidence`` as JSON text."""
    evidence = getattr(row, "evidence", None)
    if evidence is None:
        return row.model_dump(mode="json")
    out = row.model_dump(mode="json", exclude={"evidence"})
    out["evidence"] = pydantic_core.to_json(evidence).decode()
    return out


def _parquet(kind: ExportKind, pages: Iterator[list[BaseModel]]) -> Iterator[bytes]:
    schema = SCHEMAS[kind]
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    group: list[dict[str, Any]] = []
    try:
        for page in pages:
            group.extend(parquet_row(r) for r in page)
            if len(group) >= ROW_GROUP:
                writer.write_batch(pa.RecordBatch.from_pylist(group, schema=schema))
                group.clear()
                yield sink.drain()
        if group:
            writer.write_batch(pa.RecordBatch.from_pylist(group, schema=schema))
    finally:
        writer.close()
    yield sink.drain()


def write_export(
    engine: Engine, kind: ExportKind, fmt: ExportFormat, out: Path, *, page_size: int = PAGE
) -> int:
    """Write the export of ``kind`` to ``out`` (replaced whole, never half-written); its rows."""
    export = stream(engine, kind, fmt, page_size=page_size)
    partial = out.with_name(out.name + ".partial")
    try:
        # pseudonymous, but still about people: owner-only, like the extracts
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for chunk in export:
                fh.write(chunk)
        partial.replace(out)
    except OSError as exc:
        raise ConfigError(f"cannot write the {kind} export to {out}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return export.rows
