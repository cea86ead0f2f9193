"""Tests for audit_log._merkle: RFC 6962 vectors, a reference cross-check, corruptions."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log import _merkle
from audit_log._errors import ProofError
from audit_log._merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.audit_log import _reference as ref
from tests.audit_log._shared import shared_testdata

RFC6962 = shared_testdata() / "rfc6962"


def _vectors(kind: str) -> list[Any]:
    """Every JSON vector under rfc6962/<kind>, with an id made from its path."""
    root = RFC6962 / kind
    files = sorted(root.rglob("*.json"))
    return [pytest.param(f, id=str(f.relative_to(root))) for f in files]


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(value: list[str] | None) -> list[bytes]:
    # Upstream vectors encode an empty proof as JSON null in some files.
    return [_b64(p) for p in value or []]


def test_vector_directories_exist() -> None:
    # Guards against silently running zero parametrised cases.
    assert len(_vectors("inclusion")) > 50
    assert len(_vectors("consistency")) > 50


@pytest.mark.parametrize("path", _vectors("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vectors("consistency"))
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _proof(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_known_hashes() -> None:
    # RFC 6962 / transparency-dev: empty root is SHA-256(""); leaf and node prefixes.
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert len(EMPTY_ROOT) == HASH_SIZE
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    # transparency-dev/merkle testdata: leaf "" hash, seen as root of size-1 vectors.
    assert base64.b64encode(leaf_hash(b"")).decode() == (
        "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="
    )


def _leaves(n: int, salt: int = 0) -> list[bytes]:
    return [ref.ref_leaf(f"{salt}:{i}".encode()) for i in range(n)]


EXHAUSTIVE = 130


@pytest.fixture(scope="module")
def big() -> tuple[MerkleTree, list[bytes]]:
    leaves = _leaves(EXHAUSTIVE)
    return MerkleTree(leaves), leaves


def test_roots_match_reference_all_sizes(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, leaves = big
    assert tree.root(0) == EMPTY_ROOT == MerkleTree().root()
    for n in range(0, EXHAUSTIVE + 1):
        expected = ref.mth(leaves[:n])
        assert tree.root(n) == expected, n
        assert MerkleTree(leaves[:n]).root() == expected, n


def test_inclusion_matches_reference_exhaustive(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, leaves = big
    for n in range(1, EXHAUSTIVE + 1):
        root = tree.root(n)
        for i in range(n):
            got = tree.inclusion_proof(i, n)
            assert got == ref.path(i, leaves[:n]), (i, n)
            verify_inclusion(leaves[i], i, n, got, root)


def test_consistency_matches_reference_exhaustive(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, leaves = big
    roots = [tree.root(n) for n in range(EXHAUSTIVE + 1)]
    for n2 in range(0, EXHAUSTIVE + 1):
        for n1 in range(0, n2 + 1):
            got = tree.consistency_proof(n1, n2)
            assert got == ref.proof(n1, leaves[:n2]), (n1, n2)
            if n1 > 0:
                verify_consistency(n1, n2, got, roots[n1], roots[n2])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data(), n=st.integers(min_value=1, max_value=2000))
def test_large_trees_match_reference(data: st.DataObject, n: int) -> None:
    leaves = _leaves(n, salt=n)
    tree = MerkleTree(leaves)
    assert tree.root() == ref.mth(leaves)
    i = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    assert tree.inclusion_proof(i, n) == ref.path(i, leaves)
    n1 = data.draw(st.integers(min_value=1, max_value=n), label="size1")
    got = tree.consistency_proof(n1, n)
    assert got == ref.proof(n1, leaves)
    verify_consistency(n1, n, got, ref.mth(leaves[:n1]), tree.root())


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def test_corrupted_inclusion_proofs_fail(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, leaves = big
    rng = random.Random(6962)
    for n in [1, 2, 3, 5, 8, 13, 64, 100, 130]:
        root = tree.root(n)
        for i in {0, n - 1, rng.randrange(n)}:
            proof = tree.inclusion_proof(i, n)
            leaf = leaves[i]
            bad: list[tuple[str, tuple[Any, ...]]] = [
                ("flipped leaf", (_flip(leaf, 5), i, n, proof, root)),
                ("flipped root", (leaf, i, n, proof, _flip(root, 200))),
                ("added element", (leaf, i, n, [*proof, EMPTY_ROOT], root)),
                ("index beyond size", (leaf, n, n, proof, root)),
                ("short leaf", (leaf[:31], i, n, proof, root)),
            ]
            for k in range(len(proof)):
                flipped = list(proof)
                flipped[k] = _flip(flipped[k], rng.randrange(256))
                bad.append((f"flipped proof[{k}]", (leaf, i, n, flipped, root)))
            if proof:
                bad.append(("dropped element", (leaf, i, n, proof[:-1], root)))
            if n > 1:
                bad.append(("wrong index", (leaf, (i + 1) % n, n, proof, root)))
            # A root does not commit to the tree size, so a wrong size is only
            # detectable when it changes the shape (length) of the audit path.
            for other in (n - 1, n + 1):
                if i < other <= EXHAUSTIVE and len(tree.inclusion_proof(i, other)) != len(proof):
                    bad.append((f"size {other}", (leaf, i, other, proof, root)))
            for name, args in bad:
                with pytest.raises(ProofError):
                    verify_inclusion(*args)
                    pytest.fail(f"{name} accepted for index {i} size {n}")


def test_corrupted_consistency_proofs_fail(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, _ = big
    rng = random.Random(9162)
    pairs = [(1, 2), (2, 3), (3, 7), (4, 8), (6, 130), (64, 65), (100, 128), (127, 130)]
    for n1, n2 in pairs:
        r1, r2 = tree.root(n1), tree.root(n2)
        proof = tree.consistency_proof(n1, n2)
        bad: list[tuple[str, tuple[Any, ...]]] = [
            ("swapped roots", (n1, n2, proof, r2, r1)),
            ("flipped root1", (n1, n2, proof, _flip(r1, 3), r2)),
            ("flipped root2", (n1, n2, proof, r1, _flip(r2, 3))),
            ("added element", (n1, n2, [*proof, r1], r1, r2)),
            ("dropped element", (n1, n2, proof[:-1], r1, r2)),
            ("empty proof", (n1, n2, [], r1, r2)),
            ("reversed sizes", (n2, n1, proof, r2, r1)),
        ]
        # As with inclusion, sizes are only checked through the proof's shape.
        for s1, s2 in ((n1 + 1, n2), (n1, n2 + 1), (n1 - 1, n2)):
            if 0 < s1 < s2 <= EXHAUSTIVE and len(tree.consistency_proof(s1, s2)) != len(proof):
                bad.append((f"sizes {s1},{s2}", (s1, s2, proof, r1, r2)))
        for k in range(len(proof)):
            flipped = list(proof)
            flipped[k] = _flip(flipped[k], rng.randrange(256))
            bad.append((f"flipped proof[{k}]", (n1, n2, flipped, r1, r2)))
        for name, args in bad:
            with pytest.raises(ProofError):
                verify_consistency(*args)
                pytest.fail(f"{name} accepted for sizes {n1},{n2}")


def test_equal_and_zero_sizes() -> None:
    tree = MerkleTree(_leaves(5))
    assert tree.consistency_proof(0, 5) == []
    assert tree.consistency_proof(5, 5) == []
    verify_consistency(5, 5, [], tree.root(), tree.root())
    with pytest.raises(ProofError, match="size 0"):
        verify_consistency(0, 5, [], EMPTY_ROOT, tree.root())
    with pytest.raises(ProofError, match="roots differ"):
        verify_consistency(3, 3, [], tree.root(3), tree.root(4))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda t: t.inclusion_proof(5, 5), "index 5"),
        (lambda t: t.inclusion_proof(-1, 5), "index -1"),
        (lambda t: t.inclusion_proof(0, 6), "size 6"),
        (lambda t: t.inclusion_proof(0, 0), "index 0"),
        (lambda t: t.consistency_proof(4, 3), "size1 4"),
        (lambda t: t.consistency_proof(1, 6), "size2 6"),
        (lambda t: t.root(6), "size 6"),
        (lambda t: t.root(-1), "size -1"),
        (lambda t: t.leaf(5), "index 5"),
        (lambda t: t.append(b"short"), "32 bytes"),
    ],
    ids=[
        "index-equals-size",
        "negative-index",
        "size-beyond-tree",
        "empty-tree",
        "size1-above-size2",
        "size2-beyond-tree",
        "root-beyond-tree",
        "negative-root-size",
        "leaf-beyond-tree",
        "short-leaf-hash",
    ],
)
def test_out_of_range_raises(call: Any, match: str) -> None:
    with pytest.raises(ProofError, match=match):
        call(MerkleTree(_leaves(5)))


def test_append_returns_index_and_leaf_roundtrip() -> None:
    tree = MerkleTree()
    leaves = _leaves(10)
    assert [tree.append(h) for h in leaves] == list(range(10))
    assert tree.size == 10
    assert [tree.leaf(i) for i in range(10)] == leaves


@pytest.mark.slow
def test_million_leaf_proofs_take_logarithmic_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # A million leaves is the scale the architecture names; a proof must read and
    # hash O(log^2 n) nodes, never a range of leaves. Counted, not timed: the speed
    # itself is bench/audit_proofs.py's. Leaves are synthetic 32-byte values.
    n = 1_000_000
    tree = MerkleTree(i.to_bytes(32, "big") for i in range(n))
    hashed = [0]
    real = _merkle.node_hash

    def counted(left: bytes, right: bytes) -> bytes:
        hashed[0] += 1
        return real(left, right)

    monkeypatch.setattr(_merkle, "node_hash", counted)
    depth = math.ceil(math.log2(n))  # 20
    rng = random.Random(1)
    most = 0
    for _ in range(200):
        size = rng.randrange(2, n + 1)
        i, old = rng.randrange(size), rng.randrange(1, size)
        hashed[0] = 0
        inclusion = tree.inclusion_proof(i, size)
        consistency = tree.consistency_proof(old, size)
        root = tree.root(size)
        most = max(most, hashed[0])
        assert len(inclusion) <= depth and len(consistency) <= depth + 1
        verify_inclusion(tree.leaf(i), i, size, inclusion, root)  # raises if wrong
        verify_consistency(old, size, consistency, tree.root(old), root)
    # the right spine of each non-aligned subtree, for each node of a path
    assert most <= 3 * depth * depth, most
