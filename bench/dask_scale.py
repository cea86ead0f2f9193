"""Linkage on a Dask LocalCluster: time and memory per worker as the records grow.

For each size in --records: generates the synthetic population (cached under
--cache so reruns skip it), encodes it as the agencies would, and links it from
scratch with the engine's blocking and scoring as Dask tasks on a LocalCluster
of --workers worker processes (one thread each). Prints, per size, the seconds
of the whole update and of each stage, the peak resident memory of each worker
process (its VmHWM, read on the worker at the end of the size; a new cluster
per size, so each figure is that size's own), the driver's peak, the
machine's lowest available memory and most swap in use during the update
(the driver and the workers do not peak at the same time),
and whether the persons and households equal the in-process engine's
(--check, which links the size a second time in this process).

Wall-clock seconds are printed but the machine's cores may be shared: the CPU
seconds of the driver and of each worker during the update are the comparable
figures, and the growth line compares their sum.

    .venv/bin/python bench/dask_scale.py --records 1000000 3000000 10000000
    .venv/bin/python bench/dask_scale.py --records 200000 --check
    .venv/bin/python bench/dask_scale.py --lsh-bits 25   # wider person bands (docs/scale.md)
    .venv/bin/python bench/dask_scale.py --records 1000000 3000000 --surnames long-tail
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from linkage_service._engine import Delta


def peak_mib() -> float:
    """Peak resident memory of the calling process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hwm_mib() -> float:
    """Peak resident memory of this process image (VmHWM, MiB), run on a worker.

    Not ``ru_maxrss``: a worker process is forked from the process that started
    the cluster and that figure carries over the parent's resident size at fork
    (here the driver holding the population), while VmHWM belongs to the worker's
    own address space.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class MemoryWatch:
    """The machine's lowest available memory and highest swap use while it runs (Linux).

    Samples ``/proc/meminfo`` twice a second in a thread: the driver's and the
    workers' peaks need not coincide, so whether a size fits is read here, not
    from the sum of the peaks. ``None`` figures where there is no /proc.
    """

    def __init__(self) -> None:
        self.lowest_available: int | None = None  # MiB
        self.most_swap: int | None = None  # MiB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _sample() -> tuple[int, int] | None:
        try:
            with open("/proc/meminfo") as fh:
                kib = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh)}
        except OSError:
            return None
        return kib["MemAvailable"] // 1024, (kib["SwapTotal"] - kib["SwapFree"]) // 1024

    def _run(self) -> None:
        while True:
            got = self._sample()
            if got is not None:
                avail, swap = got
                low, most = self.lowest_available, self.most_swap
                self.lowest_available = avail if low is None else min(low, avail)
                self.most_swap = swap if most is None else max(most, swap)
            if self._stop.wait(0.5):
                return

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="auto", help="per worker, e.g. 8GiB (auto: RAM/n)")
    ap.add_argument("--partitions", type=int, default=0, help="row ranges (0: 2 per thread)")
    ap.add_argument("--check", action="store_true", help="also link in-process and compare")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "out")
    from evaluation._harness import (
        add_scale_options,
        load_population,
        population_dir,
        release_free_memory,
        scale_engine_config,
    )

    add_scale_options(ap)
    args = ap.parse_args()

    from linkage_service._distributed import DaskPairs
    from linkage_service._engine import LinkageEngine

    config = scale_engine_config(args)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"LocalCluster of {args.workers} worker processes x 1 thread, "
        f"memory_limit {args.memory_limit}"
    )
    print(f"surnames: {args.surnames}")
    rows: list[tuple[int, float]] = []
    for records in args.records:
        households = max(int(records / 5.19), 100)
        t0 = time.perf_counter()
        pop = load_population(
            households,
            args.seed,
            population_dir(args.cache, records, args.seed, args.surnames),
            workers=os.cpu_count() or 1,
            truth=False,  # the check compares with the in-process engine, not the truth
            surnames=args.surnames,
        )
        n = len(pop.batch)
        print(f"population: {n:,} records (ready in {time.perf_counter() - t0:.0f}s)")
        with DaskPairs.connect(
            workers=args.workers,
            memory_limit=args.memory_limit,
            partitions=args.partitions or None,
        ) as pairs:
            engine = LinkageEngine(config, pairs=pairs)
            cpu_before = pairs.client.run(time.process_time)
            t0, c0 = time.perf_counter(), time.process_time()
            with MemoryWatch() as memory:
                delta = engine.update(pop.batch, [])
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            worker_peaks = pairs.client.run(hwm_mib)
            worker_cpu = {
                w: c - cpu_before[w] for w, c in pairs.client.run(time.process_time).items()
            }
        st = delta.stats
        print(
            f"  dask: {n:,} records in {wall:.1f}s (driver CPU {cpu:.1f}s); "
            f"blocking {st['seconds_blocking']:.1f}s, scoring {st['seconds_scoring']:.1f}s, "
            f"clustering {st['seconds_clustering']:.1f}s, households "
            f"{st['seconds_households']:.1f}s; {st['candidate_pairs']:,.0f} candidate pairs, "
            f"{st['persons']:,.0f} persons, {st['households']:,.0f} households"
        )
        peaks = ", ".join(f"{v:,.0f}" for v in worker_peaks.values())
        cpus = ", ".join(f"{v:,.1f}" for v in worker_cpu.values())
        print(
            f"  peak RSS per worker (MiB): {peaks}; worker CPU seconds: {cpus}; "
            f"driver peak so far {peak_mib():,.0f} MiB"
        )
        if memory.lowest_available is not None:
            print(
                f"  during the update: lowest available memory {memory.lowest_available:,} MiB, "
                f"most swap in use {memory.most_swap:,} MiB"
            )
        rows.append((n, cpu + sum(worker_cpu.values())))
        if args.check:
            t0 = time.perf_counter()
            c0 = time.process_time()
            here = LinkageEngine(config).update(pop.batch, [])
            hs = here.stats
            same_persons = _partition(here.person_of) == _partition(delta.person_of)
            same_households = _partition(
                {r: here.household_of[p] for r, p in here.person_of.items()}
            ) == _partition({r: delta.household_of[p] for r, p in delta.person_of.items()})
            print(
                f"  in-process: {time.perf_counter() - t0:.1f}s "
                f"(CPU {time.process_time() - c0:.1f}s; "
                f"blocking {hs['seconds_blocking']:.1f}s, scoring {hs['seconds_scoring']:.1f}s); "
                f"same persons {same_persons}, "
                f"same households {same_households}, same links {_edges(here) == _edges(delta)}"
            )
        del engine, delta, pop
        gc.collect()
        release_free_memory()  # the next size starts from what is held, not this one's peak
    if len(rows) > 1:
        n0, s0 = rows[0]
        growth = ", ".join(f"{n / n0:.1f}x records: {s / s0:.2f}x CPU" for n, s in rows[1:])
        print(f"growth of CPU seconds (driver + workers) against {n0:,} records: {growth}")
    return 0


def _edges(delta: Delta) -> list[tuple[int, int, float]]:
    """(record, record, score) of every link and review pair, in order."""
    return [(a, b, s) for seq in (delta.links, delta.review) for a, b, s, _ in seq]


def _partition(label_of: dict[int, str]) -> set[frozenset[int]]:
    """The groups of a labelling (ids are random per engine; the grouping is what counts)."""
    groups: dict[str, set[int]] = {}
    for rid, label in label_of.items():
        groups.setdefault(label, set()).add(rid)
    return {frozenset(g) for g in groups.values()}


if __name__ == "__main__":
    sys.exit(main())
