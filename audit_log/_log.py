"""The durable audit log: group-committed appends, signed checkpoints, receipts.

``AuditLog`` owns one database and one in-memory Merkle tree mirroring it. A
single writer thread takes whatever appends are queued (up to ``batch_size``
entries, optionally waiting ``batch_wait`` seconds for more), writes them in one
transaction, and only after the commit returns extends the tree and releases
the waiting callers: an index is acknowledged only once it is durable.

Another process may append to the same database (an administrative command
beside the running service). The index's primary key gives each index one
winner; a batch that loses its insert adopts the rows stored past its tree,
each checked as at start-up (below), and is retried once after them. A row
that does not verify refuses the batch (TamperError naming it) and is never
adopted; a checkpoint another writer signed must match the tree at its size,
or the log stops appending and signing. A commit that failed after it became
durable is recognised by its own leaf hashes and acknowledged, not repeated.
This tolerates an occasional second writer; it is not made for two busy ones.

Checkpoints are signed only for a tree size consistent with the previous
signed checkpoint, and stored before they are published. When witnesses are
configured, a checkpoint is published (served by ``published_checkpoint``)
only once it carries valid cosignatures from ``witness_quorum`` of them.

Opening a log trusts nothing stored either: in one read snapshot it re-hashes
every entry's bytes (RFC 6962 leaf hash), checks the hash, the index and the
indexed columns of each row against those bytes, rebuilds the tree and checks
it against the latest signed checkpoint (entries after that checkpoint, which
no signature covers yet, are also parsed in full). Any mismatch stops the log
with a ``TamperError`` naming the entry index and what differs. The per-row
checks run in ``audit_log._leafscan`` (C, OpenSSL's SHA-256) so a million
entries open in seconds; a row it cannot vouch for is re-checked here, in
Python, which names the problem. Once open, leaves are served and reported
on only after their bytes hash to the verified tree (``verified_leaves``).

``verify_database`` is the independent check an IG officer runs: it trusts
nothing in the database, parses every leaf in full, recomputes every leaf hash
and root against every stored checkpoint, and names the first bad index. Both
read entries and checkpoints in one snapshot, so they can run beside live
appends. This module must never update or delete a stored row.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from . import _store as store
from ._checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    format_add_checkpoint,
    format_tlog_proof,
    open_checkpoint,
    sign_checkpoint,
)
from ._entries import Entry, entry_columns, leaf_bytes, parse_leaf
from ._errors import AuditLogError, ProofError, WitnessError
from ._leafscan import leaf_hashes as packed_leaf_hashes
from ._leafscan import scan as scan_rows_compiled
from ._merkle import EMPTY_ROOT, HASH_SIZE, MerkleTree, leaf_hash, verify_consistency
from ._note import NoteSigner, NoteVerifier, add_signatures
from ._storage_errors import ConfigError, EntryError, StorageError, TamperError

__all__ = ["Appended", "AuditLog", "VerifyResult", "WitnessEndpoint", "verify_database"]


@dataclass(frozen=True)
class Appended:
    """An acknowledged (durably committed) entry: its index and exact leaf bytes."""

    index: int
    leaf: bytes


@dataclass(frozen=True)
class WitnessEndpoint:
    """A witness the log asks for cosignatures: base URL and its cosignature verifier."""

    url: str
    verifier: CosignatureVerifier
    token: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The witness key name."""
        return str(self.verifier.name)


@dataclass
class _Pending:
    entries: list[Entry]
    future: Future[list[Appended]] = field(default_factory=Future)


@dataclass
class _Sync:
    """A request for the writer thread to adopt rows another writer appended."""

    future: Future[None] = field(default_factory=Future)


@dataclass(frozen=True)
class _Signed:
    size: int
    root: bytes
    note: str


class AuditLog:
    """An append-only, signed, verifiable audit log over one database. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        signer: NoteSigner,
        origin: str | None = None,
        *,
        witnesses: Sequence[WitnessEndpoint] = (),
        witness_quorum: int | None = None,
        batch_size: int = 256,
        batch_wait: float = 0.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        quorum = len(witnesses) if witness_quorum is None else witness_quorum
        if not 0 <= quorum <= len(witnesses):
            raise ValueError(f"witness_quorum {quorum} must be between 0 and {len(witnesses)}")
        self._engine = engine
        self._signer = signer
        self._verifier = NoteVerifier.from_vkey(signer.vkey)
        if origin is not None and origin != signer.name:
            # Checkpoint verifiers insist the origin is the log key's name.
            raise ConfigError(
                f"log origin {origin!r} must equal the signing key name {signer.name!r}"
            )
        self.origin = signer.name
        self._witnesses = list(witnesses)
        self._quorum = quorum
        self._batch_size = batch_size
        self._batch_wait = batch_wait
        self._own_client = http_client is None
        self._http = http_client or httpx.Client(timeout=10.0)
        self._witness_sizes: dict[str, int] = {}
        self._tree_lock = threading.Lock()
        self._cp_lock = threading.Lock()
        self._queue: queue.Queue[_Pending | _Sync | None] = queue.Queue()
        self._closed = False
        # Held to queue work and to close: nothing is queued behind the writer's last item.
        self._put_lock = threading.Lock()
        # Set when rows or checkpoints another writer stored contradict the
        # verified tree: from then on nothing is appended or signed.
        self._broken: TamperError | None = None
        self._writer = threading.Thread(target=self._run, name="audit-log-writer", daemon=True)
        self._tree, self._signed = self._load()
        self._published = self._load_published()
        if self._signed is None:
            # A fresh log starts with a signed checkpoint (of size 0 when
            # empty) so every later checkpoint has a predecessor to extend.
            self._sign_next()
            self._try_publish()
        self._writer.start()

    @classmethod
    def open(
        cls, url: str, signer: NoteSigner, origin: str | None = None, **kwargs: Any
    ) -> AuditLog:
        """Open (creating and migrating if needed) the log stored at database ``url``."""
        engine = store.open_engine(url)
        try:
            return cls(engine, signer, origin, **kwargs)
        except BaseException:
            engine.dispose()
            raise

    # -- life cycle -----------------------------------------------------

    def close(self) -> None:
        """Finish queued appends, stop the writer and release the database."""
        with self._put_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._writer.join()
        if self._own_client:
            self._http.close()
        self._engine.dispose()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The database engine (for read-only queries)."""
        return self._engine

    @property
    def verifier(self) -> NoteVerifier:
        """Verifier for this log's checkpoints."""
        return self._verifier

    @property
    def size(self) -> int:
        """Number of durably committed entries."""
        with self._tree_lock:
            return self._tree.size

    # -- loading and start-up checks ------------------------------------

    def _load(self) -> tuple[MerkleTree, _Signed | None]:
        # One snapshot, so the checkpoint and the entries are of the same moment.
        refusing = "; refusing to start"
        with store.snapshot(self._engine) as connection:
            latest = store.latest_checkpoint(connection)
            cp = (
                None
                if latest is None
                else _open_stored_checkpoint(*latest, self._verifier, self.origin)
            )
            try:
                tree = _verified_tree(connection, vouched=0 if cp is None else cp.size)
            except TamperError as exc:
                raise TamperError(f"{exc}{refusing}", index=exc.index, size=exc.size) from exc
            if cp is None or latest is None:
                return tree, None
            if cp.size > tree.size:
                raise _truncated(cp.size, tree.size, refusing)
            if tree.root(cp.size) != cp.root_hash:
                found = _locate_mismatch(connection, tree, cp, self._verifier, self.origin)
                raise TamperError(f"{found}{refusing}", index=found.index, size=found.size)
            return tree, _Signed(cp.size, cp.root_hash, latest[1])

    def _load_published(self) -> _Signed | None:
        if self._signed is None:
            return None
        if not self._witnesses:
            return self._signed
        names = [w.name for w in self._witnesses]
        query = (
            sa.select(store.cosignatures.c.size)
            .where(store.cosignatures.c.witness.in_(names))
            .group_by(store.cosignatures.c.size)
            .having(sa.func.count(sa.distinct(store.cosignatures.c.witness)) >= self._quorum)
            .order_by(store.cosignatures.c.size.desc())
            .limit(1)
        )
        try:
            with self._engine.connect() as connection:
                size = connection.execute(query).scalar_one_or_none()
                note_row = (
                    None
                    if size is None
                    else connection.execute(
                        sa.select(store.checkpoints.c.note).where(store.checkpoints.c.size == size)
                    ).scalar_one_or_none()
                )
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot read published checkpoint: {exc}") from exc
        if self._quorum == 0:
            return self._signed
        if size is None or note_row is None:
            return None
        cp = _open_stored_checkpoint(int(size), str(note_row), self._verifier, self.origin)
        lines = store.cosignature_lines(self._engine, cp.size)
        cosigned = add_signatures(str(note_row), [lines[n] for n in names if n in lines])
        return _Signed(cp.size, cp.root_hash, cosigned)

    # -- appending ------------------------------------------------------

    def append(self, entry: Entry) -> Appended:
        """Append one entry; return once it is durably committed."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Iterable[Entry]) -> list[Appended]:
        """Append entries in order (one transaction unless over the batch size)."""
        pending = _Pending(list(entries))
        if not pending.entries:
            return []
        with self._put_lock:
            if self._closed:
                raise StorageError("the audit log is closed")
            self._queue.put(pending)
        return pending.future.result()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            if isinstance(first, _Sync):
                self._answer_sync(first)
                continue
            batch = [first]
            syncs: list[_Sync] = []
            count = len(first.entries)
            # Group commit: take what is already queued, and wait at most
            # batch_wait (from the first arrival) for more, so one fsync
            # covers many callers without delaying a lone caller for long.
            deadline = time.monotonic() + self._batch_wait
            while count < self._batch_size:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                if isinstance(item, _Sync):
                    syncs.append(item)
                    continue
                batch.append(item)
                count += len(item.entries)
            self._commit(batch)
            for request in syncs:
                self._answer_sync(request)
        # close() queued None last, but a sync request may still be waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item.future.set_exception(StorageError("the audit log is closed"))

    def _answer_sync(self, request: _Sync) -> None:
        try:
            if self._broken is not None:
                raise self._stopped()
            self._adopt()
        except AuditLogError as exc:
            request.future.set_exception(exc)
        else:
            request.future.set_result(None)

    def _commit(self, batch: list[_Pending]) -> None:
        # Only this thread extends the tree. Another process (an administrative
        # CLI on the same database) may append rows, so a failed insert is
        # followed by adopting what it wrote, verified, and one retry.
        for attempt in range(2):
            if self._broken is not None:
                self._fail(batch, self._stopped())
                return
            start = self.size
            rows, hashes, results = _batch_rows(batch, start)
            try:
                store.insert_entries(self._engine, rows)
            except AuditLogError as exc:
                try:
                    ours = self._adopt(hashes)
                except TamperError as problem:
                    self._fail(batch, problem)
                    return
                except AuditLogError:
                    self._fail(batch, exc)  # the database is still down
                    return
                if ours:
                    break  # the commit was durable; only its answer was lost
                if self.size == start or attempt:
                    self._fail(batch, exc)
                    return
                continue  # another writer's rows are adopted: retry once after them
            with self._tree_lock:
                self._tree.extend(hashes)
            break
        for pending, done in zip(batch, results, strict=True):
            pending.future.set_result(done)

    def _stopped(self) -> TamperError:
        """A fresh error for a log stopped by ``_broken`` (re-raising the one object from
        several threads would grow its traceback with every raise)."""
        broken = self._broken
        assert broken is not None
        error = TamperError(str(broken), index=broken.index, size=broken.size)
        error.__cause__ = broken
        return error

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        for pending in batch:
            pending.future.set_exception(exc)

    def _adopt(self, ours: Sequence[bytes] = ()) -> bool:
        """Adopt, verified, the rows stored past the tree; whether they begin with ``ours``.

        Runs only on the writer thread. The rows are another writer's appends
        (or this thread's own, durable although the commit reported an error):
        each is checked as at start-up (index, leaf hash, canonical leaf,
        indexed columns) before the tree takes it, and every checkpoint stored
        meanwhile must be signed by this log's key and match the tree at its
        size. A row that does not verify raises TamperError and nothing is
        adopted; a checkpoint that does not match stops the log, as it would
        stop it at start-up.
        """
        start = self.size
        with store.snapshot(self._engine) as connection:
            try:
                # no checkpoint this log verified vouches for them: every row in full
                hashes = _verified_hashes(connection, start, vouched=start)
            except TamperError as problem:
                raise TamperError(
                    f"another writer appended behind this process and its row does not "
                    f"verify: {problem}; nothing adopted (the verified tree stays at "
                    f"{start} entries)",
                    index=problem.index,
                ) from problem
            signed = self._signed
            stored = store.checkpoints_after(connection, -1 if signed is None else signed.size)
        if not hashes:
            return False
        with self._tree_lock:
            self._tree.extend_packed(hashes)
        try:
            for size, note in stored:
                self._check_stored(size, note)
        except TamperError as exc:
            self._broken = exc
            raise
        packed = b"".join(ours)
        return bool(ours) and bytes(hashes[: len(packed)]) == packed

    def _check_stored(self, size: int, note: str) -> Checkpoint:
        """A stored checkpoint, verified: this log's key and origin, the tree's root at its size."""
        cp = _open_stored_checkpoint(size, note, self._verifier, self.origin)
        with self._tree_lock:
            tree_size = self._tree.size
            root = self._tree.root(cp.size) if cp.size <= tree_size else None
        if root is None:
            raise _truncated(cp.size, tree_size)
        if root != cp.root_hash:
            raise TamperError(
                f"the checkpoint of size {cp.size} another writer stored does not match the "
                f"entries (root {cp.root_hash.hex()}, the tree's {root.hex()}): two histories "
                "are signed with this log's key; the log stops",
                size=cp.size,
            )
        return cp

    def _sync(self) -> None:
        """Have the writer thread adopt the rows another writer appended (verified)."""
        request = _Sync()
        with self._put_lock:
            if self._closed or not self._writer.is_alive():
                # Only the writer thread extends the tree; before it runs (a
                # checkpoint signed while opening) the log changed as it opened.
                raise StorageError(
                    "the log grew behind this process and its writer is not running; open it again"
                )
            self._queue.put(request)
        request.future.result()

    # -- checkpoints ----------------------------------------------------

    def checkpoint(self, covering: int | None = None) -> str:
        """Sign a checkpoint of the current tree if it grew, publish it, return the note.

        Returns the latest published note; raises WitnessError when witnesses
        are required and too few cosigned. With ``covering``, a published
        checkpoint of at least that size is enough (concurrent receipt
        requests then share one signature instead of queueing for one each).
        """
        with self._cp_lock:
            published = self._published
            if covering is not None and published is not None and published.size >= covering:
                return published.note
            if covering is None:
                # The periodic call: take up a checkpoint another writer signed
                # (and the rows under it), so this log never serves an older one.
                if self._broken is not None:
                    raise self._stopped()
                self._adopt_stored_checkpoint()
            if self._signed is None or self._signed.size != self.size:
                self._sign_next()
            if self._published is None or self._published.size != self._signed_size():
                self._try_publish(raise_errors=True)
            assert self._published is not None
            return self._published.note

    def _signed_size(self) -> int:
        assert self._signed is not None
        return self._signed.size

    def _sign_next(self) -> None:
        if self._broken is not None:
            raise self._stopped()
        self._adopt_stored_checkpoint()
        with self._tree_lock:
            size = self._tree.size
            root = self._tree.root(size)
            prev = self._signed
            if prev is not None and prev.size == size:
                return  # another writer signed this very tree
            proof = [] if prev is None else self._tree.consistency_proof(prev.size, size)
        if prev is not None:
            # The log must never sign two inconsistent checkpoints: prove the
            # new tree extends the last signed one before signing it.
            try:
                if prev.size == 0:
                    if prev.root != EMPTY_ROOT:
                        raise ProofError("the signed empty checkpoint has a non-empty root")
                else:
                    verify_consistency(prev.size, size, proof, prev.root, root)
            except ProofError as exc:
                raise TamperError(
                    f"tree of size {size} is not consistent with the signed checkpoint of "
                    f"size {prev.size}: {exc}; not signing",
                    size=prev.size,
                ) from exc
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self._signer)
        try:
            store.insert_checkpoint(self._engine, size, note)
        except StorageError:
            # Another writer may have stored a checkpoint first: take it (verified)
            # in place of ours, which is not stored and so is never published;
            # else the failure stands.
            if self._adopt_stored_checkpoint() is None:
                raise
            return
        self._signed = _Signed(size, root, note)

    def _adopt_stored_checkpoint(self) -> int | None:
        """Take as the latest signed checkpoint one another writer stored, once verified.

        Called with ``_cp_lock`` held. A checkpoint past the tree (the other
        writer's rows not adopted yet) first has the writer thread adopt them.
        Returns the size of the adopted checkpoint, or None.
        """
        latest = store.latest_checkpoint(self._engine)
        prev = self._signed
        if latest is None or (prev is not None and latest[0] <= prev.size):
            return None
        if latest[0] > self.size:
            self._sync()
        try:
            cp = self._check_stored(*latest)
        except TamperError as exc:
            self._broken = exc
            raise
        self._signed = _Signed(cp.size, cp.root_hash, latest[1])
        return cp.size

    def _try_publish(self, raise_errors: bool = False) -> None:
        signed = self._signed
        assert signed is not None
        if self._quorum == 0:
            self._published = signed
            return
        lines: list[str] = []
        errors: list[str] = []
        stored = store.cosignature_lines(self._engine, signed.size)
        for witness in self._witnesses:
            try:
                line = stored.get(witness.name) or self._cosign(witness, signed)
            except AuditLogError as exc:
                errors.append(f"{witness.name} ({witness.url}): {exc}")
                continue
            if witness.name not in stored:
                store.insert_cosignature(self._engine, signed.size, witness.name, line)
            lines.append(line)
        if len(lines) >= self._quorum:
            self._published = _Signed(signed.size, signed.root, add_signatures(signed.note, lines))
        elif raise_errors:
            raise WitnessError(
                f"checkpoint of size {signed.size} is signed but not published: "
                f"{len(lines)} of {self._quorum} required cosignatures; " + "; ".join(errors),
                status=503,
            )

    def _cosign(self, witness: WitnessEndpoint, signed: _Signed) -> str:
        old = self._witness_sizes.get(witness.name, 0)
        body_text = _checkpoint_body(signed.note)
        for _attempt in range(3):
            if old > signed.size:
                raise WitnessError(
                    f"witness has seen size {old}, larger than this log's {signed.size}: "
                    "the witness holds a different history",
                    status=409,
                )
            with self._tree_lock:
                proof = self._tree.consistency_proof(old, signed.size)
            body = format_add_checkpoint(old, proof, signed.note)
            try:
                headers = (
                    {} if witness.token is None else {"Authorization": f"Bearer {witness.token}"}
                )
                response = self._http.post(
                    witness.url.rstrip("/") + "/add-checkpoint",
                    content=body.encode(),
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                raise WitnessError(f"cannot reach witness: {exc}", status=503) from exc
            if response.status_code == 409:
                try:
                    old = int(response.text.strip())
                except ValueError as exc:
                    raise WitnessError(
                        f"witness answered 409 without a size: {response.text[:80]!r}", status=409
                    ) from exc
                continue
            if response.status_code != 200:
                raise WitnessError(
                    f"witness answered {response.status_code}: {response.text[:200]!r}",
                    status=response.status_code,
                )
            for line in response.text.splitlines():
                if not line.strip():
                    continue
                try:
                    witness.verifier.verify_line(body_text, line)
                except AuditLogError:
                    continue  # another key's line; only ours must verify
                self._witness_sizes[witness.name] = signed.size
                return line
            raise WitnessError("witness returned no cosignature that verifies with its key")
        raise WitnessError(f"witness kept reporting a different size (last {old})", status=409)

    def published_checkpoint(self) -> str | None:
        """The latest published checkpoint note (cosigned when witnesses are required)."""
        published = self._published
        return None if published is None else published.note

    # -- proofs ---------------------------------------------------------

    def receipt(self, index: int) -> str:
        """A C2SP tlog-proof for entry ``index`` against a published checkpoint."""
        published = self._published
        if published is None or published.size <= index:
            if not 0 <= index < self.size:
                raise ProofError(f"entry {index} is not in the log of {self.size} entries")
            self.checkpoint(covering=index + 1)
            published = self._published
            assert published is not None
        with self._tree_lock:
            proof = self._tree.inclusion_proof(index, published.size)
        return format_tlog_proof(index, proof, published.note)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 6962 inclusion proof of ``index`` in the tree of ``size``."""
        with self._tree_lock:
            return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 6962 consistency proof from ``size1`` to ``size2``."""
        with self._tree_lock:
            return self._tree.consistency_proof(size1, size2)

    def leaf(self, index: int) -> bytes:
        """The stored leaf data at ``index``, once it hashes to the verified tree."""
        data = store.get_leaf(self._engine, index)
        if data is None:
            raise ProofError(f"entry {index} is not in the log of {self.size} entries")
        self.check_leaf(index, data)
        return data

    def check_leaf(self, index: int, data: bytes) -> None:
        """Raise TamperError unless ``data`` is the leaf the verified tree holds at ``index``."""
        with self._tree_lock:
            if index >= self._tree.size:
                raise TamperError(
                    f"entry {index} is stored but not in the verified tree of "
                    f"{self._tree.size} entries",
                    index=index,
                )
            expected = self._tree.leaf(index)
        if leaf_hash(data) != expected:
            raise TamperError(
                f"entry {index}: stored leaf data no longer hashes to the verified leaf "
                "(row changed while the log was running)",
                index=index,
            )

    def verified_leaves(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Leaf bytes of ``[start, end)`` (default: the whole tree), each checked against the tree.

        Readers that decide something from entries (the anomaly report) use
        this rather than the database's indexed columns, which no signature
        covers. Raises TamperError at the first row that differs or is missing.
        """
        with self._tree_lock:
            size = self._tree.size
        end = size if end is None else min(end, size)
        if start >= end:
            return
        next_index = start
        for batch in store.leaf_batches(self._engine, start, end):
            if batch[0][0] != next_index or batch[-1][0] != next_index + len(batch) - 1:
                missing = next(
                    (next_index + k for k, (i, _) in enumerate(batch) if i != next_index + k),
                    next_index + len(batch),
                )
                raise TamperError(f"entry {missing} is missing from the database", index=missing)
            datas = [data for _, data in batch]
            with self._tree_lock:
                expected = self._tree.leaf_range(next_index, next_index + len(batch))
            if packed_leaf_hashes(datas) != expected:
                for k, data in enumerate(datas):
                    self.check_leaf(next_index + k, data)
            yield from datas
            next_index += len(batch)
        if next_index != end:
            raise TamperError(f"entry {next_index} is missing from the database", index=next_index)


def _batch_rows(
    batch: Sequence[_Pending], start: int
) -> tuple[list[dict[str, Any]], list[bytes], list[list[Appended]]]:
    """The rows, leaf hashes and answers of ``batch`` appended from index ``start``."""
    now = datetime.now(UTC)
    created = store.now_micros()
    rows: list[dict[str, Any]] = []
    hashes: list[bytes] = []
    results: list[list[Appended]] = []
    for pending in batch:
        done: list[Appended] = []
        for entry in pending.entries:
            index = start + len(rows)
            data = leaf_bytes(index, now, entry)
            hashed = leaf_hash(data)
            row = entry_columns(entry)
            row.update(idx=index, leaf_data=data, leaf_hash=hashed, created_at=created)
            rows.append(row)
            hashes.append(hashed)
            done.append(Appended(index, data))
        results.append(done)
    return rows, hashes, results


def _checkpoint_body(note: str) -> str:
    # The signed text of a note is everything before the blank line that
    # separates it from the signature lines.
    return note.split("\n\n", 1)[0] + "\n"


def _open_stored_checkpoint(
    size: int, note: str, verifier: NoteVerifier, origin: str
) -> Checkpoint:
    try:
        cp, _ = open_checkpoint(note, verifier)
    except AuditLogError as exc:
        raise TamperError(
            f"stored checkpoint of size {size} does not verify: {exc}", size=size
        ) from exc
    if cp.size != size:
        raise TamperError(
            f"stored checkpoint row of size {size} holds a checkpoint of size {cp.size} "
            "(checkpoint replaced)",
            size=size,
        )
    if cp.origin != origin:
        raise TamperError(
            f"stored checkpoint of size {size} has origin {cp.origin!r}, expected {origin!r}",
            size=size,
        )
    return cp


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a successful full database verification."""

    size: int
    checkpoints: int
    latest_checkpoint_size: int | None
    root_hash: bytes


def verify_database(
    engine: Engine,
    verifier: NoteVerifier,
    origin: str | None = None,
    progress: Callable[[int], None] | None = None,
    expected: Sequence[str] = (),
) -> VerifyResult:
    """Recompute every leaf and root from the rows; raise TamperError at the first bad index.

    ``expected`` are checkpoint notes the caller saw elsewhere (an IG officer's
    state file): the stored entries must extend them too, which catches a
    truncation that also removed the checkpoints vouching for the lost rows.
    Entries and checkpoints are read in one snapshot, so a live log verifies
    as of one moment.
    """
    origin = origin or str(verifier.name)
    tree = MerkleTree()
    row_problem: TamperError | None = None
    with store.snapshot(engine) as connection:
        for row in store.entry_rows(connection):
            i = tree.size
            problem = _check_row(i, dict(row._mapping))
            if problem is not None:
                row_problem = problem
                break
            tree.append(store.stored_bytes(row.leaf_hash, i, "leaf_hash"))
            if progress is not None and tree.size % 10_000 == 0:
                progress(tree.size)
        if progress is not None:
            progress(tree.size)
        stored = store.all_checkpoints(connection)
    for note in expected:
        seen, _ = open_checkpoint(note, verifier)
        stored.append((seen.size, note))
    stored.sort(key=lambda item: item[0])
    if not stored:
        raise TamperError("no signed checkpoint is stored: nothing vouches for the entries")
    ok_size = 0
    latest: Checkpoint | None = None
    for size, note in stored:
        cp = _open_stored_checkpoint(size, note, verifier, origin)
        if cp.size > tree.size:
            if row_problem is not None:
                raise row_problem
            raise _truncated(cp.size, tree.size)
        if tree.root(cp.size) != cp.root_hash:
            raise _mismatch(ok_size, cp.size)
        ok_size = cp.size
        latest = cp
    if row_problem is not None:
        raise row_problem
    return VerifyResult(
        tree.size, len(stored), None if latest is None else latest.size, tree.root()
    )


def _mismatch(ok_size: int, bad_size: int) -> TamperError:
    return TamperError(
        f"entries {ok_size}..{bad_size - 1} do not match the signed checkpoint of size "
        f"{bad_size} (the last matching checkpoint has size {ok_size}); "
        f"first bad index is at or after {ok_size}",
        index=ok_size,
        size=bad_size,
    )


def _truncated(signed: int, stored: int, tail: str = "") -> TamperError:
    """A checkpoint of size ``signed`` over a log holding only ``stored`` entries."""
    return TamperError(
        f"log truncated: checkpoint of size {signed} is signed but only "
        f"{stored} entries are stored; first missing index {stored}{tail}",
        index=stored,
        size=signed,
    )


def _verified_tree(connection: Connection, vouched: int) -> MerkleTree:
    """The tree of every stored entry, each row checked (:func:`_verified_hashes`)."""
    hashes = _verified_hashes(connection, 0, vouched)
    tree = MerkleTree()
    tree.extend_packed(hashes)
    assert tree.size * HASH_SIZE == len(hashes)
    return tree


def _verified_hashes(connection: Connection, start: int, vouched: int) -> bytearray:
    """The packed leaf hashes of the stored entries from index ``start``, each row checked
    against its own bytes.

    Every row's leaf hash is recomputed and must equal the stored one, its
    index must be the next, and its indexed columns must be the ones its leaf
    gives; rows from ``vouched`` on (no signed checkpoint covers them yet) are
    also parsed in full. Raises TamperError naming the first bad row.
    """
    hashes = bytearray()
    count = start
    for rows in store.scan_rows(connection, start):
        first = 0
        while first < len(rows):
            accepted = scan_rows_compiled(rows, first, count, hashes)
            count += accepted
            first += accepted
            if first == len(rows):
                break
            # The compiled scan stopped: name what differs, or accept a row
            # that was only unusual (an escaped string, an unexpected type).
            row = dict(zip(store.SCAN_COLUMNS, rows[first], strict=True))
            problem = _check_row(count, row)
            if problem is not None:
                raise problem
            hashes += leaf_hash(store.stored_bytes(row["leaf_data"], count, "leaf_data"))
            count += 1
            first += 1
        batch_start = count - len(rows)
        for offset in range(max(0, vouched - batch_start), len(rows)):
            row = dict(zip(store.SCAN_COLUMNS, rows[offset], strict=True))
            problem = _check_row(batch_start + offset, row)
            if problem is not None:
                raise problem
    assert len(hashes) == (count - start) * HASH_SIZE
    return hashes


def _locate_mismatch(
    connection: Connection,
    tree: MerkleTree,
    latest: Checkpoint,
    verifier: NoteVerifier,
    origin: str,
) -> TamperError:
    """The error naming the first range of entries no stored checkpoint vouches for.

    Checkpoints only ever extend each other, so the ones the tree matches are
    a prefix of the stored sizes: a binary search opens O(log n) of them.
    """
    sizes = [s for s in store.checkpoint_sizes(connection) if 0 < s < latest.size]
    lo, hi = 0, len(sizes)  # sizes[:lo] match, sizes[hi:] (and latest) do not
    while lo < hi:
        mid = (lo + hi) // 2
        note = store.checkpoint_note(connection, sizes[mid])
        if note is None:
            raise TamperError(
                f"the checkpoint of size {sizes[mid]} vanished during the check", size=sizes[mid]
            )
        cp = _open_stored_checkpoint(sizes[mid], note, verifier, origin)
        if tree.root(cp.size) == cp.root_hash:
            lo = mid + 1
        else:
            hi = mid
    ok_size = sizes[lo - 1] if lo else 0
    bad_size = sizes[lo] if lo < len(sizes) else latest.size
    return _mismatch(ok_size, bad_size)


def _check_row(i: int, row: Mapping[str, Any]) -> TamperError | None:
    if row["idx"] != i:
        return TamperError(
            f"entry {i} is missing: the next stored row has index {row['idx']} (row deleted)",
            index=i,
        )
    try:
        data = store.stored_bytes(row["leaf_data"], i, "leaf_data")
        stored_hash = store.stored_bytes(row["leaf_hash"], i, "leaf_hash")
    except TamperError as exc:
        return exc
    if leaf_hash(data) != stored_hash:
        return TamperError(
            f"entry {i}: leaf data does not match its stored leaf hash (row changed)", index=i
        )
    try:
        record = parse_leaf(data)
    except EntryError as exc:
        return TamperError(f"entry {i}: {exc} (row changed)", index=i)
    if record.index != i:
        return TamperError(
            f"entry {i}: the leaf records index {record.index} (rows reordered or renumbered)",
            index=i,
        )
    for column, value in entry_columns(record.entry).items():
        if row[column] != value:
            return TamperError(
                f"entry {i}: column {column} is {row[column]!r} but the signed leaf "
                f"says {value!r} (row changed)",
                index=i,
            )
    return None
