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
import base64
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agency_client import (
    BadRowPolicy,
    encode_csv,
    generate_agency_key,
    generate_seal_keypair,
    generate_secret,
    load_agency_key,
    load_mapping,
    load_schema,
    load_seal_public_key,
    load_secret,
    record_ref,
)
from agency_client._synthetic import PopulationConfig, generate_population

BINS = 1000


def subset_csv(src: Path, dst: Path, keep: set[str], id_col: str, delimiter: str, enc: str) -> int:
    """Copy the rows of ``src`` whose system id is in ``keep``."""
    n = 0
    with src.open(encoding=enc, newline="") as fi, dst.open("w", encoding=enc, newline="") as fo:
        r = csv.reader(fi, delimiter=delimiter)
        w = csv.writer(fo, delimiter=delimiter)
        head = next(r)
        w.writerow(head)
        idx = [h.strip() for h in head].index(id_col)
        for row in r:
            if row and row[idx] in keep:
                w.writerow(row)
                n += 1
    return n


def load_clks(path: Path) -> tuple[list[str], np.ndarray]:
    refs, rows = [], []
    with path.open("rb") as fh:
        lines = fh.read().splitlines()
    for raw in lines[1:-1]:
        rec = json.loads(raw)
        refs.append(rec["record_ref"])
        rows.append(np.frombuffer(base64.b64decode(rec["clk"]), dtype=np.uint64))
    return refs, np.vstack(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--schema", type=Path)
    args = ap.parse_args()
    schema = load_schema(args.schema)
    work = Path(tempfile.mkdtemp(prefix="quality-"))
    started = time.perf_counter()
    households = int(args.size * 0.6) + 500
    pop = generate_population(PopulationConfig(households=households, seed=args.seed), work / "pop")

    truth: dict[tuple[str, str], str] = {}
    with (pop.truth_dir / "records.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            truth[(row["agency"], row["system_id"])] = row["person_id"]

    generate_secret(work / "keys" / "secret")
    generate_seal_keypair(work / "keys" / "unlock")
    secret = load_secret(work / "keys" / "secret")
    seal = load_seal_public_key(work / "keys" / "unlock" / "seal.pub")

    side_a = ["health"]
    side_b = [a for a in pop.agencies if a != "health"]
    person_of: dict[str, str] = {}
    clks: dict[str, np.ndarray] = {}
    refs_by_side: dict[str, list[str]] = {}
    for side, agencies in (("A", side_a), ("B", side_b)):
        ids = [(a, s) for (a, s) in truth if a in agencies]
        # deterministic for a seed (the built-in hash() is salted per process)
        ids.sort(key=lambda t: hashlib.blake2b(f"{args.seed}|{t[0]}|{t[1]}".encode()).digest())
        chosen = ids[: args.size]
        all_refs: list[str] = []
        arrays = []
        for agency in agencies:
            keep = {s for (a, s) in chosen if a == agency}
            if not keep:
                continue
            mapping = load_mapping(pop.mapping_paths[agency])
            sub = work / f"{side}-{agency}.csv"
            subset_csv(
                pop.csv_paths[agency],
                sub,
                keep,
                mapping.identity.system_id,
                mapping.csv.delimiter,
                mapping.csv.encoding,
            )
            kdir = work / "keys" / agency
            if not (kdir / "agency.key").exists():
                generate_agency_key(agency, kdir)
            key = load_agency_key(kdir / "agency.key")
            for s in keep:
                person_of[record_ref(key.record_ref_key, agency, s)] = truth[(agency, s)]
            out = work / f"{side}-{agency}.jsonl"
            encode_csv(
                sub,
                mapping,
                schema,
                secret,
                key,
                seal,
                out,
                extract_date=PopulationConfig().extract_date,
                policy=BadRowPolicy.DROP_FIELD,
                workers=1,
            )
            refs, arr = load_clks(out)
            all_refs += refs
            arrays.append(arr)
        refs_by_side[side] = all_refs
        clks[side] = np.vstack(arrays)
    encode_s = time.perf_counter() - started

    a, b = clks["A"], clks["B"]
    pa = np.bitwise_count(a).sum(axis=1).astype(np.int32)
    pb = np.bitwise_count(b).sum(axis=1).astype(np.int32)
    b_of_person: dict[str, list[int]] = {}
    for j, ref in enumerate(refs_by_side["B"]):
        b_of_person.setdefault(person_of[ref], []).append(j)
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
        for di, ref in enumerate(refs_by_side["A"][i0 : i0 + step]):
            for j in b_of_person.get(person_of[ref], ()):
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
