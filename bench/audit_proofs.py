"""Audit log proof benchmark: inclusion and consistency proofs with 1,000,000 entries.

Builds the in-memory Merkle tree the log serves proofs from (the same
``MerkleTree`` ``AuditLog`` loads at start), then times proof generation and
verification for random indices and sizes.
Run: .venv/bin/python bench/audit_proofs.py [--size N] [--proofs K] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit_log._merkle import (  # noqa: E402
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=6962)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    print(
        f"machine: nproc={os.cpu_count()} python={platform.python_version()} "
        f"{platform.system()} {platform.machine()}"
    )
    start = time.perf_counter()
    hashes = [leaf_hash(i.to_bytes(8, "big")) for i in range(args.size)]
    hashed = time.perf_counter() - start
    start = time.perf_counter()
    tree = MerkleTree(hashes)
    built = time.perf_counter() - start
    print(f"leaf hashes for {args.size:,} entries: {hashed:.2f} s; tree build: {built:.2f} s")
    start = time.perf_counter()
    root = tree.root()
    print(f"root at full size: {(time.perf_counter() - start) * 1e6:.0f} us")

    n = args.size
    cases = [(rng.randrange(n), n) for _ in range(args.proofs // 2)]
    cases += [
        (i, rng.randrange(i + 1, n + 1))
        for i in (rng.randrange(n) for _ in range(args.proofs // 2))
    ]
    start = time.perf_counter()
    proofs = [tree.inclusion_proof(i, s) for i, s in cases]
    gen = (time.perf_counter() - start) / len(cases)
    roots = {s: tree.root(s) for _, s in cases}
    start = time.perf_counter()
    for (i, s), proof in zip(cases, proofs, strict=True):
        verify_inclusion(tree.leaf(i), i, s, proof, roots[s])
    ver = (time.perf_counter() - start) / len(cases)
    print(
        f"inclusion proof ({len(cases):,} random index/size pairs, mean "
        f"{sum(map(len, proofs)) / len(proofs):.1f} hashes): generate {gen * 1e6:.1f} us, "
        f"verify {ver * 1e6:.1f} us"
    )

    pairs = []
    for _ in range(args.proofs):
        a, b = sorted(rng.randrange(1, n + 1) for _ in range(2))
        pairs.append((a, b))
    start = time.perf_counter()
    cproofs = [tree.consistency_proof(a, b) for a, b in pairs]
    gen = (time.perf_counter() - start) / len(pairs)
    croots = {s: tree.root(s) for pair in pairs for s in pair}
    start = time.perf_counter()
    for (a, b), proof in zip(pairs, cproofs, strict=True):
        verify_consistency(a, b, proof, croots[a], croots[b])
    ver = (time.perf_counter() - start) / len(pairs)
    print(
        f"consistency proof ({len(pairs):,} random size pairs, mean "
        f"{sum(map(len, cproofs)) / len(cproofs):.1f} hashes): generate {gen * 1e6:.1f} us, "
        f"verify {ver * 1e6:.1f} us"
    )
    assert root == tree.root(n)


if __name__ == "__main__":
    main()
