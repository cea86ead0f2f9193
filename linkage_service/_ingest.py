"""Streaming reception of one extract: parse, check, stage; nothing is applied here.

:class:`ExtractReceiver` takes the request body chunk by chunk and never holds
more than one line plus one chunk in memory. The header is checked as soon as
it arrives (agency = authenticated caller, registered, extract type allowed,
signing key id, pinned schema, extract id not seen before); every record line
is validated against ``protocols.TokenisedRecord`` and the pinned schema
(filter lengths, token lengths, sealed blob length, canonical base64, record
refs unique) and written to an anonymous temporary file while the SHA-256 of
the record lines is computed; the trailer's count, digest and Ed25519
signature are checked last. Only a :class:`Received` extract whose every check
passed is ever handed to the apply step (``_service``).

Errors name the line and field; they never quote record content.
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import marshal
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, NamedTuple

import sqlalchemy as sa
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from protocols import (
    ExtractHeader,
    ExtractTrailer,
    IndicatorType,
    LinkageSchema,
    TokenisedRecord,
    age_span,
    field_path,
    signed_message,
)

from . import _store as store
from ._batch import LOCAL_TOKEN_PREFIX
from ._errors import (
    AuthError,
    IngestError,
    ReplayError,
    SchemaError,
    SignatureError,
    StorageError,
    TooLarge,
)

__all__ = [
    "DEFAULT_MAX_RECORDS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_SPLIT_BYTES",
    "ExtractReceiver",
    "Received",
    "StagedRecord",
    "VerifyPool",
]

_logger = logging.getLogger("linkage_service.ingest")

# One push: a record line is about 2 KB with the default schema (two 1,024-bit
# filters, a 512-byte padded sealed identity), so 500,000 records fit in 1 GiB;
# both limits are settings (max_records_per_push, max_upload_bytes).
DEFAULT_MAX_UPLOAD_BYTES = 1024**3
DEFAULT_MAX_RECORDS = 500_000

EXACT_TOKEN_BYTES = 24
BLOCKING_TOKEN_BYTES = 12
_SEAL_OVERHEAD = 1 + 32 + 24 + 16  # version, ephemeral key, nonce, MAC
# Staged records are written in marshal blocks of this many (the staging file is
# this process's own anonymous temporary file, read back only by ``Received``)
_STAGE_BLOCK = 2000
# With a VerifyPool, a chunk's complete lines from this many bytes up are checked in
# parts, the receiver's thread taking the first and the pool's workers the others.
DEFAULT_SPLIT_BYTES = 1024**2
# an indicator type's wire name as a plain str (``.value`` of an enum member is a
# property, three times slower to read than this look-up; marshal takes only a str)
_TYPE_NAME: dict[IndicatorType, str] = {t: t.value for t in IndicatorType}


class StagedRecord(NamedTuple):
    """One checked record as staged: decoded once here, so applying it parses nothing.

    ``exact`` holds the built-in identifiers by name and the agency's own as
    ``id:<name>``; ``indicators`` are ``(type, value, ISO date)``.
    """

    digest: bytes
    record_ref: str
    clk: bytes
    address_clk: bytes | None
    exact: dict[str, bytes]
    blocking: dict[str, bytes]
    age: int | None
    age_band: str | None
    sex: str | None
    district: str | None
    indicators: tuple[tuple[str, float, str], ...]
    sealed: bytes


@dataclass
class Received:
    """A fully checked extract, its records staged in ``stage`` (:meth:`records` reads them)."""

    header: ExtractHeader
    trailer: ExtractTrailer
    body_sha256: str
    body_bytes: int
    stage: IO[bytes]
    # set when the same extract id was already applied with byte-identical content
    earlier_run_id: int | None = None

    def close(self) -> None:
        """Discard the staged records."""
        self.stage.close()

    def records(self) -> Iterator[StagedRecord]:
        """The staged records in the order of their lines."""
        self.stage.seek(0)
        while head := self.stage.read(8):
            block = self.stage.read(int.from_bytes(head, "little"))
            for fields in marshal.loads(block):
                yield StagedRecord(*fields)


def b64(value: str, line: int, field: str) -> bytes:
    """Strict, canonical base64 (the wire model checks the grammar; this the value).

    Strict decoding refuses misplaced padding and characters outside the
    alphabet; what it takes may still differ from the encoding of its bytes
    only when padded: padding after a whole group (``0000=``), or bits set
    beyond the data in the last character before the padding (2 before ``=``,
    4 before ``==``), which the canonical form leaves at zero. A test holds
    this to encoding the bytes again and comparing.
    """
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error as exc:
        raise IngestError("not valid base64", line=line, field=field) from exc
    if value[-1:] == "=" and not _canonical_padding(value, len(raw)):
        raise IngestError("not canonical base64", line=line, field=field)
    return raw


def _canonical_padding(value: str, n: int) -> bool:
    """Whether padded base64 ``value`` of ``n`` bytes is as it would be encoded."""
    pad = -n % 3  # the "="s of the canonical form
    if pad == 0 or len(value) != (n + pad) // 3 * 4:
        return False
    return value[-1 - pad] in (_PAD1_LAST if pad == 1 else _PAD2_LAST)


# base64 characters whose low 2 (before "=") or 4 (before "==") bits are zero
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_PAD1_LAST = frozenset(_B64_ALPHABET[::4])
_PAD2_LAST = frozenset(_B64_ALPHABET[::16])


def _tokens_json(tokens: Mapping[Any, str]) -> str:
    # names and values need no escape (the wire model's patterns: see content_digest)
    return "{" + ", ".join([f'"{k}": "{tokens[k]}"' for k in sorted(tokens)]) + "}"


def _scalar_json(value: str | int | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    return int.__repr__(value)


def content_digest(record: TokenisedRecord) -> bytes:
    """SHA-256 of what linkage uses of a record: everything but the sealed identity.

    The digested bytes are ``json.dumps(record.model_dump(mode="json",
    exclude=...), sort_keys=True)``, written here field by field rather than
    through the model's serialiser (a third of the time checking a record took):
    keys sorted, ``", "`` and ``": "`` between items, indicator values (finite
    floats) as ``repr``, and every string between quotes as it is: the wire
    model lets no string hold a character ``json`` would escape (base64, hex,
    lower-case names, districts, age bands, sexes, enum values and ISO dates).
    ``local_tokens`` counts only when there are some, so a record without them
    has the digest it had before the field existed (and is kept, not
    re-linked). The digests are stored: a test holds this to the ``model_dump``
    form for any record.
    """
    indicators = ", ".join(
        f'{{"date": "{i.date.isoformat()}", "type": "{_TYPE_NAME[i.type]}", '
        f'"value": {float.__repr__(i.value)}}}'
        for i in record.indicators
    )
    local = f'"local_tokens": {_tokens_json(record.local_tokens)}, ' if record.local_tokens else ""
    body = (
        f'{{"address_clk": {_scalar_json(record.address_clk)}, '
        f'"age": {_scalar_json(record.age)}, '
        f'"age_band": {_scalar_json(record.age_band)}, '
        f'"blocking_keys": {_tokens_json(record.blocking_keys)}, '
        f'"clk": "{record.clk}", '
        f'"exact_tokens": {_tokens_json(record.exact_tokens)}, '
        f'"indicators": [{indicators}], '
        f"{local}"
        f'"postcode_district": {_scalar_json(record.postcode_district)}, '
        f'"record_ref": "{record.record_ref}", '
        f'"sex": {_scalar_json(record.sex)}}}'
    )
    return hashlib.sha256(body.encode("ascii")).digest()


class ExtractReceiver:
    """Feed the body with :meth:`feed`, then call :meth:`finish` (or :meth:`close`)."""

    def __init__(
        self,
        *,
        agency_id: str,
        engine: Engine,
        schemas: dict[str, LinkageSchema],
        max_body_bytes: int,
        max_line_bytes: int,
        max_records: int | None = None,
        staging_dir: Path | None = None,
        verify_pool: VerifyPool | None = None,
        split_bytes: int = DEFAULT_SPLIT_BYTES,
    ) -> None:
        self._agency_id = agency_id
        self._pool = verify_pool
        self._split_bytes = split_bytes
        self._engine = engine
        self._schemas = schemas
        self._max_body = max_body_bytes
        self._max_line = max_line_bytes
        self._max_records = max_records
        self._buf = bytearray()
        self._size = 0
        self._line = 0
        self._pending: bytes | None = None
        self._header: ExtractHeader | None = None
        self._shape: _Shape | None = None
        self._public_key: bytes = b""
        self._replay: Any = None
        self._body = hashlib.sha256()
        self._records = hashlib.sha256()
        self._count = 0
        self._seen: dict[bytes, int] = {}
        self._block: list[tuple[Any, ...]] = []
        self._stage: IO[bytes] = tempfile.TemporaryFile(dir=staging_dir, prefix="linkage-stage-")

    @property
    def header(self) -> ExtractHeader | None:
        """The checked header, once line 1 has arrived."""
        return self._header

    def close(self) -> None:
        """Discard everything staged (the temporary file has no name to leave behind)."""
        self._stage.close()

    def body_sha256(self) -> str:
        """SHA-256 (hex) of every byte fed so far."""
        return self._body.hexdigest()

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body."""
        self._size += len(chunk)
        if self._size > self._max_body:
            raise TooLarge(
                f"the upload is larger than the limit of {self._max_body} bytes (max_upload_bytes)"
            )
        self._body.update(chunk)
        self._buf += chunk
        start = 0
        while True:
            if self._pool is not None and self._header is not None and self._replay is None:
                end = self._buf.rfind(b"\n") + 1
                if end - start >= self._split_bytes:
                    self._on_lines(bytes(self._buf[start:end]))
                    start = end
                    break
            nl = self._buf.find(b"\n", start)
            if nl == -1:
                break
            self._on_line(bytes(self._buf[start : nl + 1]))
            start = nl + 1
        del self._buf[:start]
        if len(self._buf) > self._max_line:
            raise TooLarge(
                f"line longer than the limit of {self._max_line} bytes", line=self._line + 1
            )

    def finish(self) -> Received:
        """Check the trailer, count, digest and signature; the staged extract on success."""
        if self._buf:
            raise IngestError(
                "the last line is not terminated: the upload was truncated", line=self._line + 1
            )
        if self._header is None:
            raise IngestError("empty upload: expected an extract header on line 1", line=1)
        if self._pending is None:
            raise IngestError("truncated: no trailer line after the header", line=2)
        body_sha = self._body.hexdigest()
        if self._replay is not None:
            if self._replay.body_sha256 != body_sha:
                raise ReplayError(
                    f"extract {self._header.extract_id} was already received with different "
                    "content; a new extract needs a new extract id"
                )
            trailer = ExtractTrailer.model_validate_json(self._pending)
            return Received(
                self._header,
                trailer,
                body_sha,
                self._size,
                self._stage,
                earlier_run_id=int(self._replay.run_id),
            )
        try:
            trailer = ExtractTrailer.model_validate_json(self._pending)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = field_path(err["loc"], "(line)")
            raise IngestError(
                f"bad trailer ({err['msg']}); was the upload truncated?",
                line=self._line,
                field=loc,
            ) from exc
        if trailer.model_dump_json().encode() + b"\n" != self._pending:
            raise SignatureError("trailer line is not in its canonical form", line=self._line)
        if trailer.record_count != self._count:
            raise SignatureError(
                f"trailer says {trailer.record_count} records, the upload has {self._count}",
                line=self._line,
            )
        if trailer.records_sha256 != self._records.hexdigest():
            raise SignatureError(
                "records were changed after signing (records_sha256 does not match)",
                line=self._line,
            )
        signature = b64(trailer.signature, self._line, "signature")
        message = signed_message(self._header, self._count, trailer.records_sha256)
        try:
            VerifyKey(self._public_key).verify(message, signature)
        except (BadSignatureError, ValueError) as exc:
            raise SignatureError(
                f"the signature does not verify with agency {self._agency_id!r}'s registered key",
                line=self._line,
                field="signature",
            ) from exc
        self._flush_block()
        self._stage.flush()
        self._stage.seek(0)
        return Received(self._header, trailer, body_sha, self._size, self._stage)

    # --- lines --------------------------------------------------------------------

    def _on_line(self, raw: bytes) -> None:
        self._line += 1
        if len(raw) > self._max_line:
            raise TooLarge(f"line longer than the limit of {self._max_line} bytes", line=self._line)
        if self._line == 1:
            self._on_header(raw)
            return
        if self._pending is not None:
            self._on_record(self._pending, self._line - 1)
        self._pending = raw

    def _on_lines(self, region: bytes) -> None:
        """Complete lines after the header, checked in parts: the first here, the others by
        the pool's workers meanwhile; each part then taken in line order (:meth:`_take`).

        What the receiver finds is what :meth:`_on_line` line by line would: the
        same staged records in the same order, and on a bad line the same error
        (the earliest line's, each line's checks in the same order).
        """
        lines = region.splitlines(keepends=True)
        if max(map(len, lines)) > self._max_line:
            for raw in lines:
                self._on_line(raw)  # the limit's error names its line
            return
        first = self._line + 1 - (self._pending is not None)  # line of the first record
        records = [self._pending, *lines[:-1]] if self._pending is not None else lines[:-1]
        self._line += len(lines)
        self._pending = lines[-1]  # the trailer, if it is the last line
        if not records:
            return
        pool, shape, header = self._pool, self._shape, self._header
        assert pool is not None and shape is not None and header is not None
        size = -(-len(records) // (pool.workers + 1))
        later: list[tuple[int, int, bytes, _Pending | None]] = []
        for k in range(size, len(records), size):
            part = records[k : k + size]
            data = b"".join(part)
            pending = pool.submit(data, first + k, shape, header.extract_date)
            later.append((first + k, len(part), data, pending))
        read = 0  # parts whose result was read (result() forgets each)
        try:
            own = records[:size]
            self._flush_block()  # records staged line by line before these come first
            checked = _check_lines(own, first, shape, header.extract_date)
            self._take(first, len(own), b"".join(own), checked)
            for at, count, data, pending in later:
                read += 1
                found = pool.result(pending, data, at, shape, header.extract_date)
                self._take(at, count, data, found)
        finally:
            for *_, pending in later[read:]:  # parts not read (a bad line before them)
                pool.forget(pending)

    def _take(self, first: int, count: int, data: bytes, part: _Part) -> None:
        """A part checked by :func:`_check_part`, here or by a worker (``count`` record
        lines from line ``first``), in line order."""
        self._records.update(data)
        over = None  # the line at which the count passes the limit
        if self._max_records is not None and self._count + count > self._max_records:
            over = first + self._max_records - self._count
        refs = part.refs
        each = [refs[k : k + 16] for k in range(0, len(refs), 16)]
        if over is None and len(set(each)) == len(each) and self._seen.keys().isdisjoint(each):
            self._seen.update(zip(each, range(first, first + len(each)), strict=True))
        else:  # line by line: the error names the first line at fault
            for k, ref in enumerate(each):
                if over is not None and over <= first + k:
                    raise self._too_many(over)
                self._first_use(ref, ref.hex(), first + k)
        if part.error is not None:
            assert part.error.line is not None
            if over is not None and over <= part.error.line:
                raise self._too_many(over)
            raise part.error
        if over is not None:
            raise self._too_many(over)
        self._count += count
        self._stage.write(len(part.block).to_bytes(8, "little"))
        self._stage.write(part.block)

    def _on_header(self, raw: bytes) -> None:
        try:
            header = ExtractHeader.model_validate_json(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = field_path(err["loc"], "(line)")
            raise IngestError(f"bad extract header: {err['msg']}", line=1, field=loc) from exc
        if header.model_dump_json().encode() + b"\n" != raw:
            raise IngestError("header line is not in its canonical form", line=1)
        if header.agency_id != self._agency_id:
            raise AuthError(
                f"this token pushes for agency {self._agency_id!r}, but the extract is from "
                f"agency {header.agency_id!r}"
            )
        agency = store.get_agency(self._engine, header.agency_id)
        if agency is None:
            raise AuthError(f"agency {header.agency_id!r} is not registered")
        if header.extract_type not in agency.extract_types:
            raise AuthError(
                f"agency {agency.agency_id!r} may send extract types "
                f"{', '.join(agency.extract_types)}, not {header.extract_type!r}"
            )
        if header.signing_key_id != agency.key_id:
            raise SignatureError(
                f"signed with key {header.signing_key_id}, but agency {agency.agency_id!r} is "
                f"registered with key {agency.key_id}",
                line=1,
                field="signing_key_id",
            )
        schema = self._schemas.get(header.schema_fingerprint)
        if schema is None:
            raise SchemaError(
                f"encoded with schema {header.schema_fingerprint[:16]}..., the service accepts "
                f"{', '.join(fp[:16] + '...' for fp in self._schemas)}: re-encode with an "
                "accepted schema, or, if the scheme has moved to this one, the service must "
                "pin it (its schema_files and schema_fingerprints settings)",
                line=1,
                field="schema_fingerprint",
            )
        try:
            with self._engine.connect() as conn:
                self._replay = conn.execute(
                    sa.select(store.extracts).where(
                        store.extracts.c.extract_id == header.extract_id
                    )
                ).first()
                current = conn.execute(
                    sa.select(store.extracts.c.extract_id, store.extracts.c.created_at).where(
                        store.extracts.c.agency_id == header.agency_id,
                        store.extracts.c.status == "applied",
                    )
                ).first()
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot check extract {header.extract_id}: {exc}") from exc
        if self._replay is not None and self._replay.agency_id != header.agency_id:
            raise ReplayError(f"extract id {header.extract_id} belongs to another agency", line=1)
        if (
            self._replay is None
            and current is not None
            and dt.datetime.fromisoformat(current.created_at) > header.created_at
        ):
            raise IngestError(
                f"extract {header.extract_id} was created at {header.created_at.isoformat()}, "
                f"before the agency's current extract {current.extract_id} "
                f"({current.created_at}): send a fresh extract",
                line=1,
                field="created_at",
            )
        self._header = header
        self._shape = _Shape.of(schema)
        self._public_key = agency.public_key

    def _on_record(self, raw: bytes, line: int) -> None:
        self._records.update(raw)
        self._count += 1
        if self._max_records is not None and self._count > self._max_records:
            raise self._too_many(line)
        if self._replay is not None:
            return  # only byte-identity with the earlier upload matters now
        rec = _parse_record(raw, line)
        self._first_use(bytes.fromhex(rec.record_ref), rec.record_ref, line)
        shape, header = self._shape, self._header
        assert shape is not None and header is not None
        self._block.append(_staged(rec, line, shape, header.extract_date))
        if len(self._block) >= _STAGE_BLOCK:
            self._flush_block()

    def _too_many(self, line: int) -> TooLarge:
        return TooLarge(
            f"the extract has more than {self._max_records} records, the limit of one push "
            "(max_records_per_push): split it or ask the operator to raise the limit",
            line=line,
        )

    def _first_use(self, ref: bytes, record_ref: str, line: int) -> None:
        """Refuse a record ref already on an earlier line."""
        first = self._seen.get(ref)
        if first is not None:
            raise IngestError(
                f"record_ref {record_ref} appears twice (first on line {first})",
                line=line,
                field="record_ref",
            )
        self._seen[ref] = line

    def _flush_block(self) -> None:
        """Write the staged records held so far as one length-prefixed marshal block."""
        if self._block:
            data = marshal.dumps(self._block)
            self._stage.write(len(data).to_bytes(8, "little") + data)
            self._block = []


class _Shape(NamedTuple):
    """What a schema asks of each record, read once per extract."""

    clk_bits: int
    address_bits: int
    exact: frozenset[str]
    local: frozenset[str]
    blocking: frozenset[str]  # empty: any name
    sealed_bytes: int

    @classmethod
    def of(cls, schema: LinkageSchema) -> _Shape:
        return cls(
            schema.person_filter.output_bits,
            schema.address_filter.output_bits,
            frozenset(str(k) for k in schema.exact_identifiers),
            frozenset(schema.local_identifiers),
            frozenset(b.name for b in schema.blocking_keys),
            _SEAL_OVERHEAD + schema.identity_pad_bytes,
        )


def _parse_record(raw: bytes, line: int) -> TokenisedRecord:
    """The record line as the wire model; IngestError naming the line and field."""
    try:
        return TokenisedRecord.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = field_path(err["loc"], "(line)")
        what = "the line is not a JSON record" if err["type"] == "json_invalid" else err["msg"]
        raise IngestError(what, line=line, field=loc) from exc


def _filter(value: str, bits: int, line: int, field: str) -> bytes:
    """A Bloom filter's bytes, refused unless it has the schema's ``bits``."""
    raw = b64(value, line, field)
    if len(raw) * 8 != bits:
        raise IngestError(
            f"filter has {len(raw) * 8} bits, the schema says {bits}", line=line, field=field
        )
    return raw


def _staged(
    rec: TokenisedRecord, line: int, shape: _Shape, extract_date: dt.date
) -> tuple[Any, ...]:
    """A parsed record checked against the schema's shape: its staged fields (StagedRecord)."""
    clk = _filter(rec.clk, shape.clk_bits, line, "clk")
    addr = None
    if rec.address_clk is not None:
        addr = _filter(rec.address_clk, shape.address_bits, line, "address_clk")
    exact: dict[str, bytes] = {}
    if rec.exact_tokens:
        _tokens(exact, rec.exact_tokens, shape.exact, "exact_tokens", "identifier type", "", line)
    if rec.local_tokens:
        _tokens(
            exact,
            rec.local_tokens,
            shape.local,
            "local_tokens",
            "local identifier type",
            LOCAL_TOKEN_PREFIX,
            line,
        )
    blocking: dict[str, bytes] = {}
    _tokens(
        blocking,
        rec.blocking_keys,
        shape.blocking,
        "blocking_keys",
        "blocking key",
        "",
        line,
        size=BLOCKING_TOKEN_BYTES,
        any_name=not shape.blocking,  # a schema naming no blocking key takes any
    )
    if rec.indicators:
        _check_event_dates(rec, extract_date, line)
    sealed = b64(rec.sealed_identity, line, "sealed_identity")
    if len(sealed) != shape.sealed_bytes or sealed[0] != 1:
        raise IngestError(
            f"sealed blob has {len(sealed)} bytes, expected a version-1 blob of "
            f"{shape.sealed_bytes}",
            line=line,
            field="sealed_identity",
        )
    return (
        content_digest(rec),
        rec.record_ref,
        clk,
        addr,
        exact,
        blocking,
        rec.age,
        rec.age_band,
        rec.sex,
        rec.postcode_district,
        tuple((_TYPE_NAME[i.type], i.value, i.date.isoformat()) for i in rec.indicators),
        sealed,
    )


class _Part(NamedTuple):
    """What checking a run of record lines found (see :func:`_check_part`)."""

    block: bytes  # the staged fields of every line, one marshal block (empty on error)
    refs: bytes  # the 16-byte record ref of each line parsed, in order, the failing one's too
    error: IngestError | None  # the first line's error, if any


def _check_part(data: bytes, first_line: int, shape: _Shape, extract_date: dt.date) -> _Part:
    """Check record lines ``data`` (line ``first_line`` on) as the receiver does.

    Everything but what needs the lines before them (the record count, refs seen
    earlier, the records' digest): the receiver does those, in line order.
    """
    return _check_lines(data.splitlines(keepends=True), first_line, shape, extract_date)


def _check_lines(
    lines: Sequence[bytes], first_line: int, shape: _Shape, extract_date: dt.date
) -> _Part:
    """:func:`_check_part` of lines already split."""
    rows: list[tuple[Any, ...]] = []
    refs = bytearray()
    for line, raw in enumerate(lines, start=first_line):
        try:
            rec = _parse_record(raw, line)
            # in before the line's other checks: a repeated ref is named first
            refs += bytes.fromhex(rec.record_ref)
            rows.append(_staged(rec, line, shape, extract_date))
        except IngestError as exc:
            return _Part(b"", bytes(refs), exc)
    return _Part(marshal.dumps(rows), bytes(refs), None)


def _check_file(
    lines: str, staged: str, first_line: int, shape: _Shape, extract_date: dt.date
) -> _Part:
    """In a worker: :func:`_check_part` of the lines in file ``lines``, the block written to
    file ``staged`` rather than returned (bulk bytes go through files, not the pool's pipes,
    which the receiving thread, busy with its own part, would drain slowly)."""
    with open(lines, "rb") as fh:
        part = _check_part(fh.read(), first_line, shape, extract_date)
    with open(staged, "wb") as fh:
        fh.write(part.block)
    return part._replace(block=b"")


def _serve_checks(conn: Connection) -> None:
    """A verify worker's loop: check each part sent (:func:`_check_file`) and reply.

    A reply is ``(True, part)``, or ``(False, what went wrong)`` when checking
    failed for a reason other than its lines (whose faults are in the part).
    ``None`` or a closed pipe ends it.
    """
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            reply: tuple[bool, Any] = (True, _check_file(*task))
        except Exception as exc:  # noqa: BLE001 (any failure: the receiver checks the part)
            reply = (False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


class _Worker:
    """One verify process and this end of its pipe."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve_checks, args=(child,), name="linkage-verify", daemon=True
        )
        self.process.start()
        child.close()

    def stop(self) -> None:
        """Ask it to end, then make sure it has (a worker mid-part is killed)."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class _Pending(NamedTuple):
    """A part handed to a worker: its files and the worker checking it."""

    lines: Path
    staged: Path
    worker: _Worker | None  # None: the pool could not take it (it is checked here)

    def remove_files(self) -> None:
        self.lines.unlink(missing_ok=True)
        self.staged.unlink(missing_ok=True)


class VerifyPool:
    """Worker processes that check record lines while a receiver's thread checks others.

    Checking a line (parsing it against the wire model, decoding its base64, its
    content digest) takes one core; with a pool, a large chunk is checked on
    several at once (:meth:`ExtractReceiver._on_lines`). The processes start on
    first use, by ``spawn`` (a fresh interpreter, safe beside the server's
    threads). A part is sent to an idle worker over its own pipe by the
    receiver's thread itself, so the worker starts at once: with a
    ``ProcessPoolExecutor`` the hand-over went through the executor's own
    threads, which had to win the interpreter lock from the receiver's thread,
    busy checking its own part, and a worker often started only when that part
    was done. A part's lines and staged fields pass through files in a private
    directory (under ``directory``: the staging directory), removed as soon as
    they are read and with the directory at :meth:`close`. When every worker is
    busy (several uploads at once) the part is checked by the receiver. A worker
    that fails or dies costs time, never a check: its lines are checked by the
    receiver itself, and a dead worker is replaced at the next use.
    """

    def __init__(self, workers: int, directory: Path | str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"a verify pool needs at least one worker, not {workers}")
        self.workers = workers
        self._parent = directory
        self._dir: Path | None = None
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._running: set[_Worker] = set()  # started and not stopped, idle ones too
        self._closed = False

    def submit(
        self, data: bytes, first_line: int, shape: _Shape, extract_date: dt.date
    ) -> _Pending | None:
        """Hand ``data`` to an idle worker (:func:`_check_file`); None if none can take it."""
        with self._lock:
            if self._closed:
                return None
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="linkage-verify-", dir=self._parent))
            where = self._dir
            if self._idle:
                worker: _Worker | None = self._idle.pop()
            elif len(self._running) < self.workers:
                worker = None  # a new one, started just below
            else:
                return None
            if worker is None:
                try:
                    worker = _Worker()
                except OSError:  # no process to be had (limits): checked here
                    _logger.warning("cannot start a verify worker", exc_info=True)
                    return None
                self._running.add(worker)
        fd, name = tempfile.mkstemp(dir=where, suffix=".lines")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        lines = Path(name)
        staged = lines.with_suffix(".staged")
        try:
            worker.conn.send((name, str(staged), first_line, shape, extract_date))
        except (OSError, ValueError):  # it died (or the pool was closed meanwhile)
            _logger.warning("verify worker gone; checking its lines here", exc_info=True)
            self._discard(worker)
            return _Pending(lines, staged, None)
        return _Pending(lines, staged, worker)

    def result(
        self,
        pending: _Pending | None,
        data: bytes,
        first_line: int,
        shape: _Shape,
        extract_date: dt.date,
    ) -> _Part:
        """The part's result; checked here, in this thread, if the worker could not."""
        if pending is None:
            return _check_part(data, first_line, shape, extract_date)
        try:
            if pending.worker is not None:
                reply = self._reply(pending.worker)
                if reply is not None and reply[0]:
                    part: _Part = reply[1]
                    return part._replace(block=pending.staged.read_bytes())
                _logger.warning(
                    "verify worker failed; checking its lines here: %s",
                    "it died" if reply is None else reply[1],
                )
            return _check_part(data, first_line, shape, extract_date)
        finally:
            pending.remove_files()

    def forget(self, pending: _Pending | None) -> None:
        """Drop a part whose result is not wanted, with its files (the worker's reply is
        awaited first, so that it is idle again: at most the rest of one part)."""
        if pending is None:
            return
        if pending.worker is not None:
            self._reply(pending.worker)
        pending.remove_files()

    def _reply(self, worker: _Worker) -> tuple[bool, Any] | None:
        """The worker's reply to its part (it is idle again), or None if it died."""
        try:
            reply: tuple[bool, Any] = worker.conn.recv()
        except (EOFError, OSError, ValueError):
            self._discard(worker)
            return None
        with self._lock:
            if self._closed or worker not in self._running:
                worker.stop()  # close() came meanwhile: it stops here
            else:
                self._idle.append(worker)
        return reply

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._running.discard(worker)
        worker.stop()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the pool then takes no part)."""
        return self._closed

    def close(self) -> None:
        """Stop the workers and remove their files; later parts are checked by the receivers.

        A worker still checking a part stops when that part's reply is read."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._running.difference_update(idle)
            where, self._dir = self._dir, None
        for worker in idle:
            worker.stop()
        if where is not None:
            shutil.rmtree(where, ignore_errors=True)


def _tokens(
    out: dict[str, bytes],
    given: Mapping[Any, str],
    declared: frozenset[str],
    member: str,
    what: str,
    prefix: str,
    line: int,
    *,
    size: int = EXACT_TOKEN_BYTES,
    any_name: bool = False,
) -> None:
    """Decode a record's keyed tokens of one kind into ``out`` (named ``prefix + kind``),
    each ``size`` bytes and named in ``declared`` (unless ``any_name``)."""
    for kind, token in given.items():
        if not any_name and kind not in declared:
            raise IngestError(f"{what} not in the schema", line=line, field=f"{member}.{kind}")
        raw_token = b64(token, line, f"{member}.{kind}")
        if len(raw_token) != size:
            raise IngestError(
                f"must be a {size}-byte keyed token", line=line, field=f"{member}.{kind}"
            )
        out[prefix + str(kind)] = raw_token


@functools.lru_cache(maxsize=256)
def _born_after(extract_date: dt.date, age: int | None, band: str | None) -> dt.date | None:
    """The earliest date a record of ``age`` or ``band`` on ``extract_date`` is certainly
    alive at (see :func:`_check_event_dates`); None when neither is known."""
    span = age_span(age, band)
    if span is None:
        return None
    years = span[1] + 1
    try:
        return extract_date.replace(year=extract_date.year - years)
    except ValueError:  # 29 February
        return extract_date.replace(year=extract_date.year - years, day=28)


def _check_event_dates(rec: TokenisedRecord, extract_date: dt.date, line: int) -> None:
    """Refuse an indicator dated after the extract date, or before the person was born.

    The service knows only the age in whole years at the extract date (or, from 25,
    its band), so "before birth" means earlier than ``oldest + 1`` years before the
    extract date: certainly before birth, whatever the birthday.
    """
    earliest = _born_after(extract_date, rec.age, rec.age_band)
    for k, ind in enumerate(rec.indicators):
        field = f"indicators.{k}.date"
        if ind.date > extract_date:
            raise IngestError(
                f"record {rec.record_ref}: {ind.type.value} dated {ind.date}, after the "
                f"extract date {extract_date}",
                line=line,
                field=field,
            )
        if earliest is not None and ind.date < earliest:
            raise IngestError(
                f"record {rec.record_ref}: {ind.type.value} dated {ind.date}, before the "
                f"person was born (aged {rec.age if rec.age is not None else rec.age_band} "
                f"on {extract_date})",
                line=line,
                field=field,
            )
