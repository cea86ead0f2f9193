"""Reading a log server without trusting it: checkpoints, consistency and entries.

An IG officer talks to the log over HTTP, but the log is the party being
audited, so nothing it returns is believed until it is checked against a
checkpoint signed by the pinned log key (and cosigned by the pinned witnesses
when asked). This module owns those checks as plain functions over an
``httpx.Client``:

- ``fetch_checkpoint`` / ``check_checkpoint``: the latest checkpoint, verified,
  and (with a state file) proven consistent with the last one the officer saw;
- ``verified_leaves``: entries matching a filter, each proven to be in the
  tree of a verified checkpoint. A filtered query gets one inclusion proof per
  entry in the same page; an unfiltered full export gets every leaf from 0 to
  the checkpoint size and recomputes the root, which also proves nothing was
  left out. On a mismatch the first bad index is named (found with
  consistency proofs when only the root disagrees).

Every failure is an ``AuditLogError``: ``TamperError`` (with ``index``) when
the server's answer contradicts the signed tree, ``ProofError`` for a
rollback or fork, ``StorageError`` when the server cannot be reached or
answers nonsense. This module must never return or yield an entry it has not
checked, and never write anything but the officer's own state file.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import _store as store
from ._checkpoint import Checkpoint, open_checkpoint, parse_tlog_proof, verify_tlog_proof
from ._config import log_verifier, witness_verifier
from ._entries import LeafRecord, leaf_in_file, parse_leaf
from ._errors import AuditLogError, CheckpointError, ProofError
from ._merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from ._note import NoteVerifier
from ._review import filter_mismatch
from ._storage_errors import ConfigError, EntryError, StorageError, TamperError

__all__ = [
    "PAGE",
    "ReceiptCheck",
    "check_checkpoint",
    "check_cosignatures",
    "check_successor",
    "fetch_checkpoint",
    "fetch_leaf",
    "http_get",
    "verified_leaves",
    "verify_receipt",
]

PAGE = 1000


def http_get(client: httpx.Client, path: str, **params: Any) -> httpx.Response:
    """GET ``path``; StorageError naming the path unless the server answers 200."""
    try:
        response = client.get(path, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as exc:
        raise StorageError(f"cannot reach the log at {client.base_url}: {exc}") from exc
    if response.status_code == 404:
        # Every route of the log answers for any index (400 or 200), so a 404
        # means no log is served at this URL at all.
        raise StorageError(
            f"no audit log at {_base(client)}: GET {path} answered 404; {_hint(client)}"
        )
    if response.status_code != 200:
        raise StorageError(
            f"GET {path} answered {response.status_code}: {response.text[:300].strip()}"
        )
    return response


def _base(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def _hint(client: httpx.Client) -> str:
    base = _base(client)
    if client.base_url.path.rstrip("/").endswith("/audit"):
        return (
            "the unlock service serves its audit log here only when its settings name an "
            "audit_token_file"
        )
    return f"the unlock service serves its audit log under /audit: try {base}/audit"


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise StorageError(f"{what} from the log is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise StorageError(f"{what} from the log is not a JSON object")
    return body


def _hashes(value: object, what: str, index: int | None = None) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise TamperError(f"{what}: expected a list of base64 hashes", index=index)
    try:
        return [base64.b64decode(h, validate=True) for h in value]
    except (binascii.Error, ValueError) as exc:
        raise TamperError(f"{what}: a hash is not base64: {exc}", index=index) from exc


def check_cosignatures(note: str, checkpoint: Checkpoint, witnesses: Sequence[str]) -> list[str]:
    """Require a valid cosignature from each witness vkey; return the witness names."""
    text = checkpoint.to_text()
    lines = note.split("\n\n", 1)[1].splitlines() if "\n\n" in note else []
    names = []
    for vkey in witnesses:
        verifier = witness_verifier(vkey)
        for line in lines:
            try:
                verifier.verify_line(text, line + "\n")
            except AuditLogError:
                continue
            names.append(str(verifier.name))
            break
        else:
            raise CheckpointError(
                f"checkpoint of size {checkpoint.size} carries no valid cosignature from "
                f"witness {verifier.name!r}"
            )
    return names


@dataclass(frozen=True)
class ReceiptCheck:
    """A receipt that verified: the entry, the checkpoint it is in, who cosigned it."""

    index: int
    checkpoint: Checkpoint
    witnesses: list[str]
    record: LeafRecord


def verify_receipt(
    receipt: str, entry: bytes, log_vkey: str, witnesses: Sequence[str] = ()
) -> ReceiptCheck:
    """Verify a tlog-proof receipt offline against the entry file ``entry``.

    ``entry`` is the exact leaf bytes, with or without one final line ending
    (``leaf_in_file``: a line of ``audit-log export`` is the leaf and "\\n").
    The checkpoint must carry the pinned log key's signature (``log_vkey``,
    inline or a file) and a cosignature from each of ``witnesses``, and the
    inclusion proof must lead from the leaf to its root. Raises
    ``CheckpointError``/``NoteError`` for a bad checkpoint or signature,
    ``ProofError`` when the proof does not prove this entry, ``EntryError``
    when the bytes are not a log entry, ``ConfigError`` for an unusable key.
    """
    entry = leaf_in_file(entry)
    checkpoint = verify_tlog_proof(receipt, entry, log_verifier(log_vkey))
    proof = parse_tlog_proof(receipt)
    names = check_cosignatures(proof.checkpoint_note, checkpoint, witnesses)
    record = parse_leaf(entry)
    return ReceiptCheck(proof.index, checkpoint, names, record)


def fetch_leaf(client: httpx.Client, index: int) -> bytes:
    """The leaf the server holds at ``index`` (unverified: check it with a receipt)."""
    return http_get(client, f"/leaves/{index}").content


def check_successor(
    old: Checkpoint, new: Checkpoint, consistency: Callable[[int, int], Sequence[bytes]]
) -> None:
    """Raise ProofError unless ``new`` extends ``old``: no rollback, no fork, and
    ``consistency(old.size, new.size)`` (the log's proof hashes, fetched only when
    both trees are non-empty and differ in size) proves the older tree a prefix."""
    if new.size < old.size:
        raise ProofError(f"the log rolled back: it now shows size {new.size}, you saw {old.size}")
    if new.size == old.size and new.root_hash != old.root_hash:
        raise ProofError(f"the log forked: two different roots for size {new.size}")
    if 0 < old.size < new.size:
        proof = list(consistency(old.size, new.size))
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)


def fetch_checkpoint(
    client: httpx.Client, verifier: NoteVerifier, witnesses: Sequence[str] = ()
) -> tuple[Checkpoint, str]:
    """The server's latest checkpoint, verified with the log key and required witnesses."""
    note = http_get(client, "/checkpoint").text
    checkpoint, _ = open_checkpoint(note, verifier)
    check_cosignatures(note, checkpoint, witnesses)
    return checkpoint, note


def _atomic_write(path: Path, text: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write state file {path}: {exc}") from exc


def check_checkpoint(
    client: httpx.Client,
    verifier: NoteVerifier,
    state: Path,
    witnesses: Sequence[str] = (),
) -> tuple[Checkpoint, Checkpoint | None]:
    """Fetch and verify the latest checkpoint and its consistency with ``state``; save it.

    Returns (new, old); old is None the first time. The state file is
    replaced only after every check passed, so a failed check leaves the last
    good checkpoint in place for the next attempt.
    """
    new, note = fetch_checkpoint(client, verifier, witnesses)
    old: Checkpoint | None = None
    if state.exists():
        try:
            old_note = state.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read state file {state}: {exc}") from exc
        old, _ = open_checkpoint(old_note, verifier)

        def consistency(old_size: int, new_size: int) -> list[bytes]:
            body = _json(
                http_get(client, "/proof/consistency", old=old_size, new=new_size),
                "consistency proof",
            )
            try:
                return _hashes(body.get("hashes"), "consistency proof")
            except TamperError as exc:
                raise ProofError(f"malformed consistency proof from the log: {exc}") from exc

        check_successor(old, new, consistency)
    _atomic_write(state, note)
    return new, old


def _pages(
    client: httpx.Client, where: store.EntryFilter, proof_size: int | None, page: int = PAGE
) -> Iterator[dict[str, Any]]:
    """Every item the server returns for ``where``, following ``next_start``."""
    start = where.start_index
    while True:
        params = {
            "type": where.type,
            "professional_id": where.professional_id,
            "family_id": where.family_id,
            "purpose_code": where.purpose_code,
            "decision": where.decision,
            "request_id": where.request_id,
            "since": where.since.isoformat() if where.since else None,
            "until": where.until.isoformat() if where.until else None,
            "start": start,
            "end": where.end_index,
            "proof_size": proof_size,
            "limit": page,
        }
        body = _json(http_get(client, "/entries", **params), "entry page")
        items = body.get("entries")
        if not isinstance(items, list):
            raise StorageError("entry page from the log has no 'entries' list")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("leaf"), str):
                raise StorageError("an entry from the log has no 'leaf' text")
            yield item
        following = body.get("next_start")
        if following is None:
            return
        if not isinstance(following, int) or following <= start:
            raise StorageError(f"the log's next_start {following!r} does not move forward")
        start = following


def _leaf(item: dict[str, Any], position: str) -> tuple[bytes, int]:
    data = str(item["leaf"]).encode("utf-8")
    try:
        record = parse_leaf(data)
    except EntryError as exc:
        raise TamperError(f"{position}: the server returned a bad leaf: {exc}") from exc
    return data, record.index


def verified_leaves(
    client: httpx.Client,
    checkpoint: Checkpoint,
    where: store.EntryFilter,
    limit: int | None = None,
) -> Iterator[bytes]:
    """Leaves matching ``where`` among the first ``checkpoint.size``, each verified.

    A filtered or limited query verifies each leaf's inclusion proof before it
    is yielded. An unfiltered, unlimited query (a full export) checks that the
    indices run 0..size-1 and that the recomputed root is the signed one; that
    last check can only happen after the final leaf, so a caller must discard
    everything yielded if iteration raises.
    """
    if checkpoint.size == 0:
        return
    end = checkpoint.size if where.end_index is None else min(where.end_index, checkpoint.size)
    where = dataclasses.replace(where, end_index=end, limit=None)
    if where.is_unfiltered() and limit is None and where.start_index == 0:
        yield from _full(client, checkpoint, where)
    else:
        yield from _proven(client, checkpoint, where, limit)


def _proven(
    client: httpx.Client, checkpoint: Checkpoint, where: store.EntryFilter, limit: int | None
) -> Iterator[bytes]:
    size = checkpoint.size
    previous = -1
    seen = 0
    page = PAGE if limit is None else max(1, min(PAGE, limit))
    for item in _pages(client, where, proof_size=size, page=page):
        if limit is not None and seen >= limit:
            return
        data, index = _leaf(item, f"entry after index {previous}")
        if index <= previous:
            raise TamperError(
                f"entry {index} came after entry {previous}: the server repeated or reordered "
                "entries",
                index=index,
            )
        if index >= size:
            raise TamperError(
                f"entry {index} is beyond the signed checkpoint of size {size}", index=index
            )
        mismatch = filter_mismatch(parse_leaf(data), where)
        if mismatch is not None:
            raise TamperError(
                f"entry {index} does not match the filter ({mismatch}): the server answered "
                "a different question",
                index=index,
            )
        proof = _hashes(item.get("inclusion_proof"), f"entry {index}: inclusion proof", index)
        try:
            verify_inclusion(leaf_hash(data), index, size, proof, checkpoint.root_hash)
        except ProofError as exc:
            raise TamperError(
                f"entry {index} returned by the server is not in the log signed at size "
                f"{size}: {exc}",
                index=index,
                size=size,
            ) from exc
        previous = index
        seen += 1
        yield data


def _full(
    client: httpx.Client, checkpoint: Checkpoint, where: store.EntryFilter
) -> Iterator[bytes]:
    size = checkpoint.size
    hashes: list[bytes] = []
    for item in _pages(client, where, proof_size=None):
        expected = len(hashes)
        data, index = _leaf(item, f"entry {expected}")
        if index != expected:
            raise TamperError(
                f"entry {expected} is missing from the server's export: the next entry it "
                f"returned has index {index}",
                index=expected,
                size=size,
            )
        hashes.append(leaf_hash(data))
        yield data
    if len(hashes) != size:
        raise TamperError(
            f"the server exported {len(hashes)} entries but the signed checkpoint has "
            f"{size}; first missing index {len(hashes)}",
            index=len(hashes),
            size=size,
        )
    tree = MerkleTree(hashes)
    if tree.root() != checkpoint.root_hash:
        bad = _first_bad(client, tree, checkpoint)
        raise TamperError(
            f"the exported entries do not hash to the root signed at size {size}; the first "
            f"entry that differs from the signed tree is index {bad}",
            index=bad,
            size=size,
        )


def _first_bad(client: httpx.Client, tree: MerkleTree, checkpoint: Checkpoint) -> int:
    """Binary-search the shortest prefix of our leaves not consistent with the checkpoint.

    A prefix of m leaves is good iff a consistency proof from m to the signed
    size verifies against our root of m. A lying server can only make a good
    prefix look bad (by sending a bad proof), never the reverse, so the index
    found is never later than the real first difference.
    """
    good, bad = 0, checkpoint.size
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            body = _json(
                http_get(client, "/proof/consistency", old=middle, new=checkpoint.size),
                "consistency proof",
            )
            proof = _hashes(body.get("hashes"), "consistency proof")
            verify_consistency(
                middle, checkpoint.size, proof, tree.root(middle), checkpoint.root_hash
            )
        except AuditLogError:
            # Unproven counts as bad: the answer can only move earlier.
            bad = middle
        else:
            good = middle
    return bad - 1
