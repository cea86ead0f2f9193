"""Encoding quality: how well Dice on our person filters separates true pairs.

Generates the synthetic population, takes two record sets of --size records
each (health's records against the other agencies' records), encodes both with
the shipped schema, compares every pair exhaustively (size x size Dice
coefficients, numpy popcount) and prints the similarity distributions of true
pairs (same person in the ground truth) and non-pairs, and the threshold with
the best pairwise F1.

    .venv/bin/python bench/encoding_quality.py            # 10,000 x 10,000
    .venv/bin/python bench/encoding_quality.py --size 3000 --schema my-schema.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agency_client import load_schema
from evaluation._harness import load_population

BINS = 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--schema", type=Path)
    args = ap.parse_args()
    schema = load_schema(args.schema)
    work = Path(tempfile.mkdtemp(prefix="quality-"))
    started = time.perf_counter()
    # enough households for --size records on each side (health has about a third)
    households = int(args.size * 0.6) + 500
    pop = load_population(households, args.seed, work, schema=schema)
    health = pop.agencies.index("health")
    sides = {
        "A": np.nonzero(pop.batch.agency == health)[0],
        "B": np.nonzero(pop.batch.agency != health)[0],
    }
    clks: dict[str, np.ndarray] = {}
    persons: dict[str, list[str]] = {}
    for side, rows in sides.items():
        # deterministic for a seed (the built-in hash() is salted per process)
        ids = pop.batch.ids.tolist()
        chosen = sorted(
            rows.tolist(),
            key=lambda r: hashlib.blake2b(f"{args.seed}|{ids[r]}".encode()).digest(),
        )[: args.size]
        clks[side] = pop.batch.clk[chosen]
        persons[side] = [pop.truth_person[r] for r in chosen]
    encode_s = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)

    a, b = clks["A"], clks["B"]
    pa = np.bitwise_count(a).sum(axis=1).astype(np.int32)
    pb = np.bitwise_count(b).sum(axis=1).astype(np.int32)
    b_of_person: dict[str, list[int]] = {}
    for j, person in enumerate(persons["B"]):
        b_of_person.setdefault(person, []).append(j)
    hist_all = np.zeros(BINS + 1, dtype=np.int64)
    true_sims: list[float] = []
    t0 = time.perf_counter()
    step = 64
    for i0 in range(0, len(a), step):
        blk = a[i0 : i0 + step]
        inter = np.bitwise_count(blk[:, None, :] & b[None, :, :]).sum(axis=2, dtype=np.int32)
        denom = pa[i0 : i0 + step, None] + pb[None, :]
        dice = np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1), 0.0)
        hist_all += np.bincount((dice * BINS).astype(np.int64).ravel(), minlength=BINS + 1)
        for di, person in enumerate(persons["A"][i0 : i0 + step]):
            for j in b_of_person.get(person, ()):
                true_sims.append(float(dice[di, j]))
    compare_s = time.perf_counter() - t0
    ts = np.array(true_sims)
    hist_true = np.bincount((ts * BINS).astype(np.int64), minlength=BINS + 1)
    hist_non = hist_all - hist_true
    # pairs with similarity >= threshold bin k are predicted matches
    tp = hist_true[::-1].cumsum()[::-1]
    fp = hist_non[::-1].cumsum()[::-1]
    fn = len(ts) - tp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    best = int(np.argmax(f1))
    pairs = len(a) * len(b)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{dt.datetime.now():%Y-%m-%d}"
    )
    print(
        f"schema: {schema.name} ({schema.fingerprint()[:16]}...), person filter "
        f"{schema.person_filter.output_bits} bits, hardening {schema.person_filter.hardening.value}"
    )
    print(f"records: {len(a):,} x {len(b):,} = {pairs:,} pairs; true pairs {len(ts):,}")
    print(
        f"mean fill: A {pa.mean() / (64 * a.shape[1]):.3f}, B {pb.mean() / (64 * b.shape[1]):.3f}"
    )
    print(
        f"time: generate+encode {encode_s:.1f}s, exhaustive compare {compare_s:.1f}s "
        f"({pairs / compare_s / 1e6:.1f} M pairs/s numpy)"
    )
    qs = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95]
    print(
        "true pairs  Dice quantiles "
        + " ".join(f"p{int(q * 100)}={np.quantile(ts, q):.3f}" for q in qs)
    )
    cum_non = hist_non.cumsum() / hist_non.sum()
    nq = " ".join(
        f"p{int(q * 100)}={np.searchsorted(cum_non, q) / BINS:.3f}" for q in (*qs, 0.9999)
    )
    print(f"non-pairs   Dice quantiles {nq}")
    print("similarity histogram (share of each class per 0.05 band):")
    for lo in range(0, BINS, 50):
        hi = lo + 50 if lo + 50 < BINS else BINS + 1  # the last band includes Dice = 1
        t_share = hist_true[lo:hi].sum() / max(len(ts), 1)
        n_share = hist_non[lo:hi].sum() / max(hist_non.sum(), 1)
        if t_share > 0.0005 or n_share > 0.0005:
            print(
                f"  {lo / BINS:.2f}-{(lo + 50) / BINS:.2f}  true {t_share:7.2%}  "
                f"non {n_share:9.5%}  {'#' * int(t_share * 60)}"
            )
    print(
        f"best threshold {best / BINS:.3f}: precision {tp[best] / max(tp[best] + fp[best], 1):.4f} "
        f"recall {tp[best] / len(ts):.4f} F1 {f1[best]:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
