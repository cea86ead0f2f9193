"""Candidate pairs a record by blocking key, and which of them no other key finds.

For each size in --records: loads the synthetic population (cached under
--cache, as bench/dask_scale.py does), holds it in a linkage engine without
linking it, and blocks every person key on its own (each LSH band, each agency
blocking key, each exact-token type, each address band that pairs persons), as
the engine's candidate generation does. Prints, a record, for each kind of key:
the pairs it makes, those that are not the same person (the population's
truth), and those that no other key or band finds, which are the pairs the key
alone adds to the candidates; then the distinct candidates overall. This is
what docs/scale.md uses to say where the candidates a record grow with the
population.

    .venv/bin/python bench/pairs_by_key.py --lsh-bits 25 --records 1000000 3000000 10000000

Memory: about 8 bytes a pair of every key (the codes, packed with the key's
number and sorted once) on top of the engine's columns: 10M records took
about 10 GB.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_KEY_BITS = 5  # a key's number packed below its pair codes: up to 32 keys


def _kind(name: str) -> str:
    """The row a key is counted under: the bands together, other keys by name."""
    return name if ":" in name else name.rstrip("0123456789")


def count(records: int, args: argparse.Namespace) -> None:
    from evaluation._harness import load_population, population_dir, scale_engine_config
    from linkage_service._blocking import block_codes
    from linkage_service._engine import LinkageEngine

    t0 = time.perf_counter()
    pop = load_population(
        max(int(records / 5.19), 100),
        args.seed,
        population_dir(args.cache, records, args.seed, args.surnames),
        workers=os.cpu_count() or 1,
        surnames=args.surnames,
    )
    number: dict[str, int] = {}
    truth = np.fromiter(
        (number.setdefault(p, len(number)) for p in pop.truth_person),
        dtype=np.int64,
        count=len(pop.truth_person),
    )
    engine = LinkageEngine(scale_engine_config(args))
    engine._append(pop.batch)
    del pop
    n, cfg = engine._n, engine.config
    names = [f"lsh{b}" for b in range(cfg.lsh_bands)]
    names += [f"key:{k}" for k in engine.block_keys]
    names += [f"exact:{t}" for t in engine.exact_names[: engine.exact.shape[1]]]
    names += [f"address{b}" for b in range(min(cfg.address_lsh_bands, cfg.address_person_bands))]
    assert len(names) < 2**_KEY_BITS
    everyone = np.ones(n, dtype=np.bool_)
    made: list[tuple[str, int, int]] = []  # (key, pairs, of them the same person)
    parts = []
    specs = list(engine._person_blocks())
    assert len(specs) == len(names), "the engine's keys changed: update this bench"
    for k, (name, spec) in enumerate(zip(names, specs, strict=True)):
        codes = block_codes(spec.key, everyone, spec.window, engine.alive, within=spec.within)
        i, j = np.divmod(codes, n)
        made.append((name, codes.size, int((truth[i] == truth[j]).sum())))
        del i, j
        codes <<= _KEY_BITS
        codes |= k
        parts.append(codes)
    del engine, specs
    packed = np.concatenate(parts)
    del parts
    packed.sort()
    codes = packed >> _KEY_BITS
    key = (packed & (2**_KEY_BITS - 1)).astype(np.int8)
    del packed
    first = np.ones(codes.size, dtype=np.bool_)
    np.not_equal(codes[1:], codes[:-1], out=first[1:])
    alone = first.copy()
    alone[:-1] &= first[1:]  # the only copy of its code: one key found it
    i, j = np.divmod(codes[alone], n)
    other = truth[i] != truth[j]
    del i, j
    alone_by_key = np.bincount(key[alone], minlength=len(names))
    alone_other_by_key = np.bincount(key[alone][other], minlength=len(names))
    distinct = int(first.sum())
    same = 0
    step = 1 << 26
    for lo in range(0, codes.size, step):
        i, j = np.divmod(codes[lo : lo + step][first[lo : lo + step]], n)
        same += int((truth[i] == truth[j]).sum())
    print(
        f"{n:,} records (ready and blocked in {time.perf_counter() - t0:.0f}s): "
        f"{distinct:,} distinct candidate pairs, {distinct / n:.2f} a record "
        f"({same / n:.2f} the same person, {(distinct - same) / n:.2f} not)"
    )
    rows: dict[str, list[int]] = {}
    for k, (name, pairs, same_k) in enumerate(made):
        row = rows.setdefault(_kind(name), [0, 0, 0, 0])
        row[0] += pairs
        row[1] += pairs - same_k
        row[2] += int(alone_by_key[k])
        row[3] += int(alone_other_by_key[k])
    head = ("key (a record)", "pairs", "not same", "only it", "not same")
    print("  {:24s} {:>7s} {:>9s} {:>8s} {:>9s}".format(*head))
    for kind, (pairs, other_k, alone_k, alone_other_k) in rows.items():
        print(
            f"  {kind:24s} {pairs / n:7.2f} {other_k / n:9.2f} "
            f"{alone_k / n:8.2f} {alone_other_k / n:9.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "out")
    from evaluation._harness import add_scale_options

    add_scale_options(ap)
    args = ap.parse_args()
    for records in args.records:
        count(records, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
