"""Linkage at council scale: 1,000,000 records end to end, then an incremental update.

Generates the synthetic population (cached under bench/out/ so reruns skip it),
encodes every agency's extract with the agency client, loads the extracts into
record batches as the service does, and runs the linkage engine:

(b) link everything from scratch: seconds, peak memory, person and household
    pair F1 against the ground truth at the shipped thresholds;
(c) incremental: the same engine, holding all but --changed records, links
    --changed new records and retires --changed old ones.

Peak memory is resident set size in MiB: (b)'s includes the harness (the batch,
the ground truth, the loader's leftovers: the population line's RSS); (c)'s
window (sampled) starts after (b)'s engine and the ground truth are freed.

    .venv/bin/python bench/linkage_scale.py                     # 1M records
    .venv/bin/python bench/linkage_scale.py --records 100000
    .venv/bin/python bench/linkage_scale.py --schema docs/schemas/person-unhardened-v1.json
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    """Current resident memory of this process (MiB)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """Peak resident memory of this process so far (MiB; what /usr/bin/time -v reports / 1024)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakSampler:
    """Highest RSS seen while in the ``with`` block, sampled every 10 ms (MiB).

    Sampling, not the kernel's high-water mark: resetting that (clear_refs) would
    also hide the earlier peak from ``/usr/bin/time -v``.
    """

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            self._stop.wait(0.01)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--changed", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--schema", type=Path, help="a linkage schema file (default: the shipped one)")
    from evaluation._harness import (
        add_scale_options,
        load_population,
        pair_scores,
        population_dir,
        scale_engine_config,
    )

    add_scale_options(ap)
    args = ap.parse_args()

    from agency_client import load_schema
    from linkage_service._engine import LinkageEngine

    config = scale_engine_config(args)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    households = max(int(args.records / 5.19), 100)
    schema = load_schema(args.schema)
    cache = population_dir(args.cache, args.records, args.seed, args.surnames)
    if args.schema is not None:
        cache = cache.with_name(f"{cache.name}-{schema.fingerprint()[:12]}")
    print(f"surnames: {args.surnames}")
    print(f"schema: {schema.name} ({schema.fingerprint()[:16]}...)")
    t0 = time.perf_counter()
    pop = load_population(
        households,
        args.seed,
        cache,
        workers=os.cpu_count() or 1,
        schema=schema,
        surnames=args.surnames,
    )
    n = len(pop.batch)
    print(
        f"population: {n:,} records from {len(pop.agencies)} agencies "
        f"(generated/encoded/loaded in {time.perf_counter() - t0:.0f}s; "
        f"batch in memory, RSS {rss_mib():,.0f} MiB)"
    )

    # (b) from scratch
    engine = LinkageEngine(config)
    t0 = time.perf_counter()
    delta = engine.update(pop.batch, [])
    link_s = time.perf_counter() - t0
    row_of = {int(r): i for i, r in enumerate(pop.batch.ids.tolist())}
    person = [""] * n
    for rid, pid in delta.person_of.items():
        person[row_of[rid]] = pid
    household = [delta.household_of.get(p, "") for p in person]
    print(
        f"(b) linked {n:,} records in {link_s:.1f}s; peak RSS {peak_mib():,.0f} MiB; "
        f"{len(set(person)):,} persons, {len(set(household)):,} households, "
        f"{len(delta.review):,} pairs for review"
    )
    print(f"    persons:    {pair_scores(person, pop.truth_person)}")
    print(f"    households: {pair_scores(household, pop.truth_household)}")
    stats = ", ".join(f"{k} {v:,.3g}" for k, v in sorted(delta.stats.items()))
    print(f"    engine stats: {stats}")

    # (c) incremental: hold out --changed records, then add them and retire as many others;
    # (b)'s engine, results and ground truth go first, so that what is held is one
    # engine and its input, as in the service
    batch = pop.batch
    del engine, delta, person, household, row_of, pop
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(n)
    held, rest = np.sort(order[: args.changed]), np.sort(order[args.changed :])
    retire = batch.ids[rng.choice(rest, size=args.changed, replace=False)].tolist()
    added, base = batch.take(held), batch.take(rest)
    del batch
    with PeakSampler() as window:
        engine = LinkageEngine(config)
        engine.update(base, [])
        del base
        t0 = time.perf_counter()
        delta = engine.update(added, retire)
        inc_s = time.perf_counter() - t0
    print(
        f"(c) incremental: {args.changed:,} new + {args.changed:,} retired records against "
        f"{len(rest):,} in {inc_s:.2f}s; {len(delta.person_of):,} assignments changed, "
        f"{len(delta.merges)} merges, {len(delta.splits)} splits; peak RSS of (c) "
        f"{window.peak:,.0f} MiB (whole run {peak_mib():,.0f} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
