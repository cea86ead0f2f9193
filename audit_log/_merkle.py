"""RFC 6962 / RFC 9162 §2.1 Merkle tree hashing, proofs and proof verification.

This module owns the tree arithmetic of the audit log: leaf and node hashes,
an in-memory append-only tree that serves roots, inclusion proofs and
consistency proofs for any earlier size, and the two verification algorithms
of RFC 9162 §2.1.3.2 and §2.1.4.2.

Leaf and node hashes over many inputs at once (building a tree of a million
leaves at start-up) go through ``audit_log._leafscan``, which calls OpenSSL's
SHA-256 in a C loop; ``leaf_hash`` and ``node_hash`` here are the same
functions one at a time (tests check the two agree).

It must never do I/O, never know what an entry means, and never report a
verification result as a boolean a caller could ignore: verifiers return
``None`` on success and raise ``ProofError`` naming the reason otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from audit_log._errors import ProofError
from audit_log._leafscan import node_hashes

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = bytes.fromhex(
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)  # SHA-256(""), RFC 6962 §2.1 MTH({})

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


class MerkleTree:
    """An in-memory append-only Merkle tree that keeps every complete subtree.

    ``_levels[k]`` holds, packed 32 bytes per slot, the hash of every complete
    subtree of ``2**k`` leaves, in order. Any subtree hash the RFC recursion
    needs is then either stored or a node over a stored left part and a
    smaller right part, so roots and proofs for any size cost O(log n) hashes.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and return its index."""
        if len(leaf_hash) != HASH_SIZE:
            raise ProofError(
                f"leaf hash for index {self._size} must be {HASH_SIZE} bytes, got {len(leaf_hash)}"
            )
        index = self._size
        self.extend_packed(leaf_hash)
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order."""
        packed = bytearray()
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ProofError(
                    f"leaf hash for index {self._size + len(packed) // HASH_SIZE} must be "
                    f"{HASH_SIZE} bytes, got {len(h)}"
                )
            packed += h
        self.extend_packed(packed)

    def extend_packed(self, packed: bytes | bytearray) -> None:
        """Append leaf hashes given back to back (32 bytes each) in one buffer."""
        if len(packed) % HASH_SIZE:
            raise ProofError(
                f"packed leaf hashes must be a multiple of {HASH_SIZE} bytes, got {len(packed)}"
            )
        if not packed:
            return
        self._levels[0] += packed
        self._size += len(packed) // HASH_SIZE
        # Every two slots of a level close one complete subtree a level up;
        # hash the pairs that are new, level by level, until a level gains none.
        level = 0
        while True:
            pairs = len(self._levels[level]) // (2 * HASH_SIZE)
            if level + 1 == len(self._levels):
                if pairs == 0:
                    break
                self._levels.append(bytearray())
            done = len(self._levels[level + 1]) // HASH_SIZE
            if pairs == done:
                break
            self._levels[level + 1] += node_hashes(self._levels[level], done, pairs - done)
            level += 1

    def leaf_range(self, start: int, end: int) -> bytes:
        """The leaf hashes of ``[start, end)`` back to back."""
        if not 0 <= start <= end <= self._size:
            raise ProofError(f"leaf range {start}..{end} out of range for tree size {self._size}")
        return bytes(self._levels[0][start * HASH_SIZE : end * HASH_SIZE])

    def leaf(self, index: int) -> bytes:
        """Return the leaf hash stored at ``index``."""
        if not 0 <= index < self._size:
            raise ProofError(f"leaf index {index} out of range for tree size {self._size}")
        return self._stored(0, index)

    def root(self, size: int | None = None) -> bytes:
        """Return the root hash of the tree at ``size`` leaves (default: current size)."""
        if size is None:
            size = self._size
        self._check_size(size, "size")
        if size == 0:
            return EMPTY_ROOT
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Return the RFC 6962 PATH(index, D[0:size]) audit path, leaf level first."""
        self._check_size(size, "size")
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} out of range for tree size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start += k
        proof.reverse()
        return proof

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Return the RFC 9162 §2.1.4.1 consistency proof from ``size1`` to ``size2``."""
        self._check_size(size2, "size2")
        if not 0 <= size1 <= size2:
            raise ProofError(f"size1 {size1} must be between 0 and size2 {size2}")
        if size1 == 0 or size1 == size2:
            return []
        proof: list[bytes] = []
        start, end, m, complete = 0, size2, size1, True
        while True:
            n = end - start
            if m == n:
                # SUBPROOF(m, D[m], b): the old root itself is omitted only when
                # it is the whole old tree, which the verifier already holds.
                if not complete:
                    proof.append(self._subtree(start, end))
                break
            k = _split(n)
            if m <= k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start += k
                m -= k
                complete = False
        proof.reverse()
        return proof

    def _check_size(self, size: int, what: str) -> None:
        if not 0 <= size <= self._size:
            raise ProofError(f"{what} {size} out of range for tree of {self._size} leaves")

    def _stored(self, level: int, index: int) -> bytes:
        row = self._levels[level]
        return bytes(row[index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def _subtree(self, start: int, end: int) -> bytes:
        """Return MTH(D[start:end]) for a range the RFC recursion can produce."""
        n = end - start
        if n & (n - 1) == 0:
            # The recursion only yields power-of-two ranges aligned to their
            # own size, so a power-of-two range is always a stored subtree.
            level = n.bit_length() - 1
            return self._stored(level, start >> level)
        k = _split(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))


def _inclusion_proof_size(index: int, size: int) -> tuple[int, int]:
    """Split the proof length for ``index`` in ``size`` into (inner, border) parts."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 §2.1.3.2); raise ProofError if it fails."""
    if index < 0 or size < 0:
        raise ProofError(f"index {index} and size {size} must be non-negative")
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    inner, border = _inclusion_proof_size(index, size)
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof for index {index} in size {size} must have "
            f"{inner + border} hashes, got {len(proof)}"
        )
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof hash {i}")

    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError(
            f"inclusion proof for index {index} in size {size} leads to root "
            f"{r.hex()}, expected {root.hex()}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check a consistency proof (RFC 9162 §2.1.4.2); raise ProofError if it fails."""
    if size1 < 0 or size2 < 0:
        raise ProofError(f"sizes must be non-negative, got size1 {size1} and size2 {size2}")
    if size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}")
    if size1 == 0:
        # Every tree extends the empty tree, so such a "proof" proves nothing;
        # callers that start from nothing must say so instead of verifying.
        raise ProofError("a consistency proof from size 0 is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError(
                f"sizes are equal ({size1}) so the proof must be empty, got {len(proof)} hashes"
            )
        if root1 != root2:
            raise ProofError(
                f"sizes are equal ({size1}) but roots differ: {root1.hex()} != {root2.hex()}"
            )
        return
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    if not proof:
        raise ProofError(f"consistency proof from {size1} to {size2} is empty")
    inner, border = _inclusion_proof_size(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    expected = inner + border + (0 if size1 == 1 << shift else 1)
    if len(proof) != expected:
        raise ProofError(
            f"consistency proof from {size1} to {size2} must have {expected} hashes, "
            f"got {len(proof)}"
        )
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof hash {i}")

    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root1:
        raise ProofError(
            f"consistency proof leads to root1 {fr.hex()} for size {size1}, expected {root1.hex()}"
        )
    if sr != root2:
        raise ProofError(
            f"consistency proof leads to root2 {sr.hex()} for size {size2}, expected {root2.hex()}"
        )
