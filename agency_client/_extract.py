"""Writing, signing, reading and verifying extract files.

:func:`encode_csv` streams a CSV through worker processes into a temporary file
beside the output, signs the trailer, fsyncs and renames: a reader sees either
the previous file or a complete signed extract, never half of one. Memory stays
flat: at most a few chunks of rows are in flight. The records are written in a
fresh, cryptographically random order (:class:`_Shuffle`), never in the CSV's:
agencies' files are often sorted by household or address, and the linkage
operator must not learn who lives with whom from where a line sits. :func:`verify_extract`
streams an extract back, checks every line against the wire models, the record
digest and the agency's signature, and gathers the statistics ``inspect`` shows.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import gc
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import uuid
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from protocols import (
    ExtractHeader,
    ExtractTrailer,
    LinkageSchema,
    SealPublicKey,
    TokenisedRecord,
    field_path,
    open_private,
    private_dir,
    signed_message,
)

from ._encoder import BLOCKING_TOKEN_BYTES, EXACT_TOKEN_BYTES
from ._errors import ConfigError, ExtractError, InputError
from ._keys import AgencyKey, AgencyPublicKey
from ._mapping import AgencyMapping, check_schema, resolve_columns
from ._rows import (
    BadRowPolicy,
    ChunkResult,
    Problem,
    RowContext,
    RowEncoder,
    encode_block_or_stop,
)

BLOCK_BYTES = 256 * 1024  # about 1,500 rows of a typical agency CSV
MAX_BLOCK_BYTES = 64 * 1024 * 1024  # a quoted field longer than this is a broken file
SPAWN_AFTER_BLOCKS = 5  # below about 7,500 rows one process is faster
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class EncodeSummary:
    """What an encode run produced."""

    out_path: Path
    header: ExtractHeader
    record_count: int
    rows_read: int
    rows_skipped: int
    fields_dropped: int
    problems_path: Path | None
    seconds: float


def encode_csv(
    csv_path: Path,
    mapping: AgencyMapping,
    schema: LinkageSchema,
    secret: bytes,
    agency_key: AgencyKey,
    seal_key: SealPublicKey,
    out_path: Path,
    *,
    extract_date: dt.date | None = None,
    policy: BadRowPolicy = BadRowPolicy.FAIL,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    problems_path: Path | None = None,
) -> EncodeSummary:
    """Encode ``csv_path`` into a signed extract at ``out_path`` (atomically).

    Refuses, before the extract is written, what ``check`` calls an error: a
    column the mapping names missing from the header, a system id on two rows,
    a derive that matches no row.
    """
    started = dt.datetime.now(dt.UTC)
    if agency_key.agency_id != mapping.agency.id:
        raise ConfigError(
            f"the agency key is for {agency_key.agency_id!r} but the mapping is for "
            f"{mapping.agency.id!r}"
        )
    check_schema(mapping, schema)
    extract_date = extract_date or started.date()
    header = ExtractHeader(
        agency_id=mapping.agency.id,
        extract_id=uuid.uuid4().hex,
        extract_type=mapping.agency.extract_type,
        created_at=started.replace(microsecond=0),
        extract_date=extract_date,
        schema_fingerprint=schema.fingerprint(),
        signing_key_id=agency_key.key_id,
        seal_key_id=seal_key.key_id,
    )
    workers = workers if workers is not None else (os.cpu_count() or 1)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    private_dir(out_path.parent)
    shuffle = _Shuffle(out_path.parent, _bucket_count(csv_path))
    problems: list[Problem] = []
    count = skipped = rows_read = 0
    digest = hashlib.sha256()
    refs = bytearray()  # the first 8 bytes of each record's ref
    derive_hits = [0] * len(mapping.derive)
    derive_missed = [0] * len(mapping.derive)
    try:
        with _open_csv(csv_path, mapping) as (columns, blocks), open_private(tmp, "wb") as out:
            ctx = RowContext(
                mapping=mapping,
                schema=schema,
                secret=secret,
                record_ref_key=agency_key.record_ref_key,
                seal_public_key=bytes(seal_key.public_key),
                agency_id=mapping.agency.id,
                extract_id=header.extract_id,
                extract_date=extract_date,
                columns=columns,
                policy=policy,
            )
            out.write(header.model_dump_json().encode() + b"\n")
            for result in _run_blocks(ctx, blocks, workers, shuffle):
                n_rows = result.rows
                rows_read += n_rows
                fatal = [p for p in result.problems if p.action == "failed"]
                if fatal:
                    p = fatal[0]
                    raise InputError(str(csv_path), p.line, p.field, p.problem)
                problems.extend(result.problems)
                skipped += result.skipped
                refs += result.refs
                for k, hits in enumerate(result.derive_hits):
                    derive_hits[k] += hits
                    if result.derive_missed[k] and not derive_missed[k]:
                        derive_missed[k] = result.derive_missed[k]
                count += result.count
                if progress is not None:
                    progress(n_rows)
            if rows_read == 0:
                raise InputError(str(csv_path), 2, None, "the file has a header but no records")
            _refuse_unmatched_derives(csv_path, mapping, derive_hits, derive_missed)
            _refuse_repeated_ids(csv_path, mapping, refs)
            if count == 0:
                raise InputError(str(csv_path), 2, None, "every row was bad; nothing to send")
            for data in shuffle.shuffled():
                digest.update(data)
                out.write(data)
            message = signed_message(header, count, digest.hexdigest())
            signature = agency_key.signing_key.sign(message).signature
            trailer = ExtractTrailer(
                record_count=count,
                records_sha256=digest.hexdigest(),
                signature=base64.b64encode(signature).decode("ascii"),
            )
            out.write(trailer.model_dump_json().encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
    finally:
        shuffle.close()
        tmp.unlink(missing_ok=True)
    written_problems = None
    if problems:
        written_problems = problems_path or out_path.with_name(out_path.name + ".problems.csv")
        _write_problems(written_problems, str(csv_path), problems)
    return EncodeSummary(
        out_path=out_path,
        header=header,
        record_count=count,
        rows_read=rows_read,
        rows_skipped=skipped,
        fields_dropped=sum(1 for p in problems if p.action == "field dropped"),
        problems_path=written_problems,
        seconds=(dt.datetime.now(dt.UTC) - started).total_seconds(),
    )


SHUFFLE_CSV_BYTES_PER_BUCKET = 4 * 1024 * 1024  # about 20,000 rows, 40 MB of lines


def _bucket_count(csv_path: Path) -> int:
    """How many buckets the shuffle spreads an extract over: one per few MB of CSV."""
    try:
        size = csv_path.stat().st_size
    except OSError:
        size = 0  # _open_csv names the file that cannot be read
    return 1 + size // SHUFFLE_CSV_BYTES_PER_BUCKET


class _Shuffle:
    """Puts an extract's record lines in a uniformly random order, in bounded memory.

    Each line goes to one of ``buckets`` files chosen at random (:func:`_scatter`,
    run by whichever process encoded the line, so the lines never travel back
    through this one); each bucket is then read back whole and put in a random
    order (:func:`_order_bucket`): the Rao-Sandelius external shuffle, every order
    of the lines equally likely, with no more than one bucket (tens of MB) in a
    process's memory. The worker processes order the buckets too, one each, while
    the main process hashes and writes the ones before. Randomness comes from the
    operating system (``os.urandom``), a fresh permutation per extract, never
    seeded: the order must say nothing of the CSV's, and a second encode of the
    same file must not repeat the first one's order. The buckets hold encoded
    lines only (what the extract holds), in a private directory beside it.
    """

    def __init__(self, out_dir: Path, buckets: int) -> None:
        self.dir = tempfile.mkdtemp(prefix=".family-linkage-shuffle-", dir=out_dir)  # 0700
        self.buckets = max(1, buckets)
        # worker processes putting each bucket in order, when the encode had them
        self.pool: ProcessPoolExecutor | None = None
        self.ordering: list[Future[None]] = []

    def shuffled(self) -> Iterator[bytes]:
        """Every line scattered, in random order, as newline-terminated chunks.

        Buckets the worker processes have put in order already (:func:`_order_bucket`)
        are read as they are; any other is put in order here first.
        """
        for k in range(self.buckets):
            ordered = os.path.join(self.dir, f"{k}.ordered")
            if self.ordering:
                self.ordering[k].result()  # a worker's error surfaces here
            elif not os.path.exists(ordered):
                _order_bucket(self.dir, k)
            with open(ordered, "rb") as fh:
                while chunk := fh.read(SHUFFLE_CHUNK_BYTES):
                    yield chunk
            os.unlink(ordered)

    def close(self) -> None:
        """Stop the workers; remove the buckets (the extract, if written, holds their lines)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        shutil.rmtree(self.dir, ignore_errors=True)


SHUFFLE_CHUNK_BYTES = 4 * 1024 * 1024  # read back from an ordered bucket at a time


def _order_bucket(directory: str, k: int) -> None:
    """Put bucket ``k``'s lines (every process's part) in a uniformly random order.

    The lines are sorted by 64-bit keys from the OS (a tie, which would favour the
    earlier line, has odds below 1 in 10^10 per bucket) and written to
    ``<k>.ordered``; the parts are removed. Run by a worker process at the end of
    an encode, one bucket each, while the main process writes the ones before.
    """
    prefix = f"{k}."
    lines: list[bytes] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(prefix) and name != f"{k}.ordered":
            part = os.path.join(directory, name)
            with open(part, "rb") as fh:
                got = fh.read().split(b"\n")
            os.unlink(part)
            got.pop()  # each part ends with a newline: the last piece is empty
            lines += got
    keys = array("Q", os.urandom(8 * len(lines)))
    order = sorted(range(len(lines)), key=keys.__getitem__)
    fd = os.open(
        os.path.join(directory, f"{k}.ordered"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
    )
    with os.fdopen(fd, "wb") as out:
        for start in range(0, len(order), 4096):
            out.write(b"\n".join([lines[i] for i in order[start : start + 4096]]) + b"\n")


def _scatter(directory: str, buckets: int, data: bytes, writer: str) -> None:
    """Append each of ``data``'s newline-terminated lines to a random bucket's file.

    Each process appends to files of its own (``<bucket>.<writer>``), so no two
    processes write one file; each append is one unbuffered write, so nothing is
    left in a buffer when a worker process exits.
    """
    lines = data.split(b"\n")
    lines.pop()  # data ends with a newline: the last piece is empty
    if buckets == 1:
        groups = [lines]
    else:
        groups = [[] for _ in range(buckets)]
        for line, k in zip(lines, array("I", os.urandom(4 * len(lines))), strict=True):
            groups[k % buckets].append(line)
    for k, group in enumerate(groups):
        if group:
            fd = os.open(
                os.path.join(directory, f"{k}.{writer}"),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                0o600,
            )
            try:
                left = memoryview(b"\n".join(group) + b"\n")
                while left:  # a write to a regular file may, rarely, be short
                    left = left[os.write(fd, left) :]
            finally:
                os.close(fd)


def _refuse_unmatched_derives(
    csv_path: Path, mapping: AgencyMapping, hits: list[int], missed: list[int]
) -> None:
    for step, n, line in zip(mapping.steps(), hits, missed, strict=True):
        if n == 0:
            why = (
                f"e.g. line {line} has a value without the declared shape"
                if line
                else "its source is blank in every row"
            )
            raise ConfigError(
                f"{mapping.path}: {step.describe()} matches no row of {csv_path} ({why}); "
                "fix the derive (agency-client check shows what the rows hold)"
            )


def _refuse_repeated_ids(csv_path: Path, mapping: AgencyMapping, refs: bytearray) -> None:
    """Stop when two encoded rows share a record ref (their system ids are the same).

    Refs are compared by their first eight bytes, sorted; on a hit the CSV is read
    again to name the repeated ids and their lines (and a chance 64-bit collision
    of two different ids is let through).
    """
    import numpy as np  # here, not at import: it costs the main process about 12 MB

    codes = np.frombuffer(refs, dtype="<u8")
    if codes.size < 2:
        return
    ordered = np.sort(codes, kind="stable")
    if not bool(np.any(ordered[1:] == ordered[:-1])):
        return
    from ._check import describe_repeats, repeated_ids

    repeats = repeated_ids(csv_path, mapping)
    if repeats:
        first = repeats[0][1]
        raise InputError(
            str(csv_path),
            first[1],
            f"system_id (column {mapping.identity.system_id!r})",
            f"{len(repeats)} system ids appear on more than one row: {describe_repeats(repeats)}; "
            "each record needs its own system id (the linkage service refuses repeated "
            "record refs)",
        )


class _open_csv:
    """Context manager: open a CSV, check its header against the mapping.

    Yields the column index and an iterator of ``(first line, bytes)`` blocks of
    whole rows. Blocks are cut at a newline outside any quoted field (an even
    number of quote bytes before it), so a row is never split. The main process
    only reads and cuts bytes: decoding and parsing happen in the workers. That
    is safe because the mapping's encoding is ASCII-compatible, so newline and
    quote bytes are never part of another character (CsvSection checks it).
    """

    def __init__(self, path: Path, mapping: AgencyMapping) -> None:
        self.path = path
        self.mapping = mapping

    def __enter__(self) -> tuple[dict[str, int], Iterator[tuple[int, bytes]]]:
        try:
            self.fh = self.path.open("rb")
        except OSError as exc:
            raise InputError(str(self.path), 0, None, f"cannot open: {exc.strerror}") from exc
        try:
            first = self.fh.readline(MAX_BLOCK_BYTES).decode(self.mapping.csv.encoding)
            head = next(csv.reader([first], delimiter=self.mapping.csv.delimiter, strict=True), [])
        except (csv.Error, UnicodeDecodeError) as exc:
            self.fh.close()
            raise InputError(str(self.path), 1, None, f"unreadable header: {exc}") from exc
        if not head:
            self.fh.close()
            raise InputError(str(self.path), 1, None, "the file is empty: no header row")
        head = [h.strip() for h in head]
        seen: set[str] = set()
        for name in head:
            if name in seen:
                self.fh.close()
                raise InputError(str(self.path), 1, name, "column name appears twice in the header")
            seen.add(name)
        try:
            columns = resolve_columns(self.mapping, head, str(self.path))
        except InputError:
            self.fh.close()
            raise
        return columns, self._blocks()

    def _blocks(self) -> Iterator[tuple[int, bytes]]:
        line = 2
        buf = b""
        while True:
            data = self.fh.read(BLOCK_BYTES)
            if not data:
                break
            buf += data
            cut = buf.rfind(b"\n")
            while cut != -1 and buf.count(b'"', 0, cut) % 2:
                cut = buf.rfind(b"\n", 0, cut)
            if cut == -1:
                if len(buf) > MAX_BLOCK_BYTES:
                    raise InputError(str(self.path), line, None, "unterminated quoted field")
                continue
            block, buf = buf[: cut + 1], buf[cut + 1 :]
            yield line, block
            line += block.count(b"\n")
        if buf.strip():
            yield line, buf

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


_WORKER: RowEncoder | None = None


def _worker_context() -> BaseContext:
    """A forkserver that has imported the encoder once: each worker is then a cheap fork.

    Not plain fork: the CLI's progress bar runs a thread, and forking a process
    with threads can copy a held lock. Not spawn: it re-imports everything (about
    half a second of CPU) in every worker of every run.
    """
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload(["agency_client._rows"])
    return ctx


def _init_worker(ctx: RowContext) -> None:
    global _WORKER  # the process-pool initializer pattern: one encoder per worker process
    _WORKER = RowEncoder(ctx)


def _work(first_line: int, text: bytes, shuffle_dir: str, buckets: int) -> ChunkResult:
    assert _WORKER is not None
    result = encode_block_or_stop(_WORKER, first_line, text)
    # What a block leaves behind is cache entries: set them aside from the cyclic
    # collector for good (reference counting still frees them when evicted). Only
    # here, in a worker process that does nothing but encode blocks.
    gc.freeze()
    if result.count:
        # the lines go straight to the shuffle's buckets, not back to the main process
        _scatter(shuffle_dir, buckets, result.data, str(os.getpid()))
        result.data = b""
    return result


IN_FLIGHT_PER_WORKER = 4  # blocks queued or being encoded per worker


def _run_blocks(
    ctx: RowContext, blocks: Iterator[tuple[int, bytes]], workers: int, shuffle: _Shuffle
) -> Iterator[ChunkResult]:
    """Encode blocks in order, in worker processes when ``workers > 1`` and the input is big.

    Each block's lines are scattered over ``shuffle``'s buckets by the process that
    encoded them; the results carry counts, problems and refs only.
    """
    head = list(itertools.islice(blocks, SPAWN_AFTER_BLOCKS))
    if workers <= 1 or len(head) < SPAWN_AFTER_BLOCKS:
        # starting worker processes costs about a second: not worth it for small files
        encoder = RowEncoder(ctx)
        for first_line, text in itertools.chain(head, blocks):
            result = encode_block_or_stop(encoder, first_line, text)
            if result.count:
                _scatter(shuffle.dir, shuffle.buckets, result.data, "main")
                result.data = b""
            yield result
        return
    blocks = itertools.chain(head, blocks)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_worker_context(),
        initializer=_init_worker,
        initargs=(ctx,),
    )
    handed = False
    window: deque[Future[ChunkResult]] = deque()
    try:
        for first_line, text in blocks:
            window.append(pool.submit(_work, first_line, text, shuffle.dir, shuffle.buckets))
            if len(window) >= IN_FLIGHT_PER_WORKER * workers:  # bounded
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
        # every line is in its bucket: the workers put the buckets in order too,
        # while the main process writes the ones before (the shuffle owns the pool now)
        shuffle.ordering = [
            pool.submit(_order_bucket, shuffle.dir, k) for k in range(shuffle.buckets)
        ]
        shuffle.pool, handed = pool, True
    finally:
        for fut in window:
            fut.cancel()
        if not handed:
            pool.shutdown(wait=True, cancel_futures=True)


def _write_problems(path: Path, source: str, problems: list[Problem]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    # 0600: the problems quote raw values (NHS numbers, UPNs) of the agency's rows.
    with open_private(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "line", "field", "problem", "action"])
        for p in problems:
            w.writerow([source, p.line, p.field or "", p.problem, p.action])
    os.replace(tmp, path)


# --- reading and verifying ----------------------------------------------------------


@dataclass
class FillStats:
    """Running statistics of the fraction of bits set in a filter."""

    count: int = 0
    total: float = 0.0
    low: float = 1.0
    high: float = 0.0
    lengths: Counter[int] = field(default_factory=Counter)

    def add(self, filter_bytes: bytes) -> None:
        """Account for one filter."""
        bits = 8 * len(filter_bytes)
        fill = int.from_bytes(filter_bytes, "little").bit_count() / bits if bits else 0.0
        self.count += 1
        self.total += fill
        self.low = min(self.low, fill)
        self.high = max(self.high, fill)
        self.lengths[bits] += 1

    @property
    def mean(self) -> float:
        """Mean fill."""
        return self.total / self.count if self.count else 0.0


@dataclass
class ExtractInfo:
    """What verify_extract learned about an extract."""

    header: ExtractHeader
    trailer: ExtractTrailer
    signature_checked: bool
    # checked against a schema given to verify_extract: fingerprint, filter lengths,
    # local identifier types
    schema_checked: bool = False
    person_fill: FillStats = field(default_factory=FillStats)
    address_fill: FillStats = field(default_factory=FillStats)
    exact_tokens: Counter[str] = field(default_factory=Counter)
    local_tokens: Counter[str] = field(default_factory=Counter)
    blocking_keys: Counter[str] = field(default_factory=Counter)
    indicators: Counter[str] = field(default_factory=Counter)
    sex: Counter[str] = field(default_factory=Counter)
    sealed_lengths: Counter[int] = field(default_factory=Counter)
    duplicate_refs: int = 0


def verify_extract(
    path: Path,
    public_key: AgencyPublicKey | None,
    *,
    schema: LinkageSchema | None = None,
    on_record: Callable[[TokenisedRecord], None] | None = None,
) -> ExtractInfo:
    """Stream and check an extract: shape, digest, count, signature, schema."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ExtractError(f"{path}: cannot open: {exc.strerror}") from exc
    with fh:
        first = fh.readline(MAX_LINE_BYTES + 1)
        if not first:
            raise ExtractError(f"{path}: empty file, expected a header line")
        header = _parse(path, 1, first, ExtractHeader, "header")
        if public_key is not None:
            if public_key.agency_id != header.agency_id:
                raise ExtractError(
                    f"{path}: extract is from agency {header.agency_id!r}, the key is for "
                    f"{public_key.agency_id!r}"
                )
            if public_key.key_id != header.signing_key_id:
                raise ExtractError(
                    f"{path}: signed with key {header.signing_key_id}, expected {public_key.key_id}"
                )
        if schema is not None and schema.fingerprint() != header.schema_fingerprint:
            raise ExtractError(
                f"{path}: encoded with schema {header.schema_fingerprint[:16]}..., "
                f"expected {schema.fingerprint()[:16]}..."
            )
        digest = hashlib.sha256()
        seen: set[bytes] = set()
        dupes = 0
        person, address = FillStats(), FillStats()
        exact: Counter[str] = Counter()
        local: Counter[str] = Counter()
        blocking: Counter[str] = Counter()
        indicators: Counter[str] = Counter()
        sexes: Counter[str] = Counter()
        sealed: Counter[int] = Counter()
        line_no = 1
        pending: bytes | None = None
        count = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if len(raw) > MAX_LINE_BYTES:
                raise ExtractError(f"{path}:{line_no + 1}: line longer than {MAX_LINE_BYTES} bytes")
            if not raw:
                break
            if pending is not None:
                rec = _parse(path, line_no, pending, TokenisedRecord, "record")
                digest.update(pending)
                count += 1
                key = rec.record_ref.encode()
                if key in seen:
                    dupes += 1
                seen.add(key)
                clk = _b64(path, line_no, "clk", rec.clk)
                person.add(clk)
                if schema is not None and len(clk) * 8 != schema.person_filter.output_bits:
                    raise ExtractError(
                        f"{path}:{line_no}: field 'clk' has {len(clk) * 8} bits, the schema "
                        f"says {schema.person_filter.output_bits}"
                    )
                if rec.address_clk is not None:
                    address.add(_b64(path, line_no, "address_clk", rec.address_clk))
                for kind, token in rec.exact_tokens.items():
                    _token(path, line_no, f"exact_tokens.{kind}", token, EXACT_TOKEN_BYTES)
                    exact[str(kind)] += 1
                for name, token in rec.local_tokens.items():
                    _token(path, line_no, f"local_tokens.{name}", token, EXACT_TOKEN_BYTES)
                    if schema is not None and name not in schema.local_identifiers:
                        raise ExtractError(
                            f"{path}:{line_no}: field 'local_tokens.{name}': the schema "
                            "declares no such local identifier"
                        )
                    local[name] += 1
                for name, token in rec.blocking_keys.items():
                    _token(path, line_no, f"blocking_keys.{name}", token, BLOCKING_TOKEN_BYTES)
                    blocking[name] += 1
                indicators.update(i.type.value for i in rec.indicators)
                sexes[rec.sex or "unknown"] += 1
                sealed[len(_b64(path, line_no, "sealed_identity", rec.sealed_identity))] += 1
                if on_record is not None:
                    on_record(rec)
            pending = raw
            line_no += 1
        if pending is None:
            raise ExtractError(f"{path}: truncated: no trailer line after the header")
        trailer = _parse(path, line_no, pending, ExtractTrailer, "trailer")
        if trailer.record_count != count:
            raise ExtractError(
                f"{path}: trailer says {trailer.record_count} records, the file has {count}"
            )
        if trailer.records_sha256 != digest.hexdigest():
            raise ExtractError(f"{path}: records were changed after signing (digest mismatch)")
        checked = False
        if public_key is not None:
            sig = _b64(path, line_no, "signature", trailer.signature)
            if not public_key.verify(signed_message(header, count, trailer.records_sha256), sig):
                raise ExtractError(f"{path}: the signature does not verify with the agency's key")
            checked = True
        return ExtractInfo(
            header=header,
            trailer=trailer,
            signature_checked=checked,
            schema_checked=schema is not None,
            person_fill=person,
            address_fill=address,
            exact_tokens=exact,
            local_tokens=local,
            blocking_keys=blocking,
            indicators=indicators,
            sex=sexes,
            sealed_lengths=sealed,
            duplicate_refs=dupes,
        )


_M = TypeVar("_M", ExtractHeader, ExtractTrailer, TokenisedRecord)


def _parse(path: Path, line: int, raw: bytes, model: type[_M], what: str) -> _M:
    if not raw.endswith(b"\n"):
        raise ExtractError(f"{path}:{line}: {what} line is not terminated (truncated file?)")
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = field_path(err["loc"], "(line)")
        raise ExtractError(f"{path}:{line}: bad {what}: field {loc!r}: {err['msg']}") from exc
    if what != "record" and parsed.model_dump_json().encode() + b"\n" != raw:
        # the header and trailer are written in exactly one form; any other bytes were edited
        raise ExtractError(f"{path}:{line}: {what} line is not in its canonical form")
    return parsed


def _b64(path: Path, line: int, name: str, value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ExtractError(f"{path}:{line}: field {name!r} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != value:
        # unused low bits of the last character would let two strings carry one value
        raise ExtractError(f"{path}:{line}: field {name!r} is not canonical base64")
    return raw


def _token(path: Path, line: int, name: str, value: str, size: int) -> None:
    if len(_b64(path, line, name, value)) != size:
        raise ExtractError(f"{path}:{line}: field {name!r} must be a {size}-byte keyed token")


def iter_records(path: Path) -> Iterator[dict[str, object]]:
    """Raw record dicts of an extract, unverified (for tests and tooling)."""
    with path.open("rb") as fh:
        fh.readline()
        pending: bytes | None = None
        for raw in fh:
            if pending is not None:
                yield json.loads(pending)
            pending = raw
