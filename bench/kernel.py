"""Dice kernel speed: comparisons/s of our compiled kernel vs anonlink 0.15.

Both sides score the SAME seeded random 1024-bit filters (about half the bits
set), all pairs of an n x n block at threshold 0.8: ours with
``linkage_service._kernel.dice_above`` on one thread and on two threads (the
loops release the GIL, so each thread takes half the rows of ``a``), anonlink
with ``anonlink.similarities.dice_coefficient_accelerated`` (its C++ popcount
kernel, single thread, ``k=None`` so it keeps every pair above the threshold).

anonlink is never a project dependency: on first run this script creates
``bench/out/anonlink-venv`` with ``python3.11 -m venv`` and pip-installs
anonlink there, writes the filters to ``bench/out/kernel-filters.npy`` and runs
the anonlink measurement as a subprocess of that venv. Its conversion of our
rows to bitarrays happens before the clock starts; its own packing of them into
a C buffer is part of its call, as it is for any caller.

    .venv/bin/python bench/kernel.py                   # 10,000 x 10,000 at 0.8
    .venv/bin/python bench/kernel.py --rows 4000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from linkage_service import _kernel, _kernel_ref

OUT = Path(__file__).resolve().parent / "out"
ANONLINK = "anonlink==0.15.3"

ANONLINK_CHILD = r"""
import json, sys, time
import numpy as np
from bitarray import bitarray
import anonlink
from anonlink.similarities import dice_coefficient_accelerated

filters = np.load(sys.argv[1])
half, threshold, repeats = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

def bits(rows):
    out = []
    for row in rows:
        b = bitarray(endian="little")  # filter bit i = bit i % 64 of word i // 64
        b.frombytes(row.astype("<u8").tobytes())
        out.append(b)
    return out

a, b = bits(filters[:half]), bits(filters[half:])
best, hits = float("inf"), None
for _ in range(repeats):
    started = time.perf_counter()
    sims, (i0, i1) = dice_coefficient_accelerated([a, b], threshold, k=None)
    best = min(best, time.perf_counter() - started)
    hits = len(sims)
# Cross-check on a small block at a threshold with many hits.
sims, (i0, i1) = dice_coefficient_accelerated([a[:300], b[:300]], 0.5, k=None)
print(json.dumps({"seconds": best, "hits": hits, "version": anonlink.__version__,
                  "check": sorted(zip(map(int, i0), map(int, i1), map(float, sims)))}))
"""


def machine() -> str:
    """CPU model, core count and the kernel body in use."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"kernel bodies {'/'.join(_kernel.implementations())}"
    )


def anonlink_python() -> Path:
    """Python of the benchmark's own anonlink venv, created on first use."""
    venv = OUT / "anonlink-venv"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import anonlink, numpy, bitarray"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} and installing {ANONLINK} (once)", flush=True)
    subprocess.run(["python3.11", "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, ANONLINK, "numpy", "bitarray"], check=True)
    subprocess.run(probe, check=True)
    return python


def time_ours(
    a: np.ndarray, b: np.ndarray, threshold: float, threads: int, repeats: int
) -> tuple[float, int]:
    """(best seconds, hits) for all pairs of a x b, rows of a split across threads."""
    bounds = np.linspace(0, a.shape[0], threads + 1).astype(int)
    parts = [np.ascontiguousarray(a[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    best, hits = float("inf"), 0
    for _ in range(repeats):
        found = [0] * threads

        def run(k: int, found: list[int] = found) -> None:
            found[k] = _kernel.dice_above(parts[k], b, threshold)[0].shape[0]

        workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - started)
        hits = sum(found)
    return best, hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows on each side")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    n = args.rows
    rng = np.random.default_rng(args.seed)
    filters = rng.integers(0, 2**64, size=(2 * n, 16), dtype=np.uint64)  # 1024 bits
    a, b = filters[:n], filters[n:]
    path = OUT / "kernel-filters.npy"
    np.save(path, filters)
    pairs = n * n

    print(machine())
    print(
        f"{n:,} x {n:,} random 1024-bit filters, threshold {args.threshold}, best of {args.repeats}"
    )

    # Same answers first: both kernels on a block with many hits at 0.5.
    want = _kernel_ref.dice_above(a[:300], b[:300], 0.5)
    ours_check = _kernel.dice_above(a[:300], b[:300], 0.5)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(ours_check, want, strict=True))

    rates: dict[str, float] = {}
    hits: dict[str, int] = {}
    for label, threads in (("ours, 1 thread", 1), ("ours, 2 threads", 2)):
        seconds, hits[label] = time_ours(a, b, args.threshold, threads, args.repeats)
        rates[label] = pairs / seconds

    python = anonlink_python()
    child = OUT / "kernel_anonlink_child.py"
    child.write_text(ANONLINK_CHILD)
    cmd = [str(python), str(child), str(path), str(n), str(args.threshold), str(args.repeats)]
    result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    label = f"anonlink {result['version']}, 1 thread"
    rates[label], hits[label] = pairs / result["seconds"], result["hits"]
    theirs = sorted(zip(*(x.tolist() for x in want), strict=True))
    agree = [(i, j) for i, j, _ in result["check"]] == [(i, j) for i, j, _ in theirs]
    worst = max(
        (abs(s - t[2]) for (*_, s), t in zip(result["check"], theirs, strict=False)), default=0.0
    )

    for label, rate in rates.items():
        print(
            f"  {label:<28} {rate / 1e6:9.1f} M comparisons/s   ({hits[label]} pairs >= "
            f"{args.threshold})"
        )
    anon = next(r for k, r in rates.items() if k.startswith("anonlink"))
    ratio = rates["ours, 1 thread"] / anon
    print(
        f"  single-core ratio ours/anonlink: {ratio:.2f}x (target >= 2x: "
        f"{'met' if ratio >= 2 else 'NOT met'})"
    )
    print(
        f"  2-thread speed-up over 1 thread: "
        f"{rates['ours, 2 threads'] / rates['ours, 1 thread']:.2f}x"
    )
    print(
        f"  cross-check 300 x 300 at 0.5: same {len(theirs)} pairs: {agree}, largest score "
        f"difference {worst:.1e}"
    )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
