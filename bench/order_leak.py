"""Order leak: does where a record sits say which household it belongs to?

Generates a synthetic population (the agency client's generator, and the
independent council generator of ``evaluation/``), encodes every agency's CSV
exactly as ``agency-client encode`` does, and prints, per extract, the Spearman
rank correlation between position and true household index: **before** (the
CSV's row order, which unshuffled extracts used to follow line for line) and
**after** (the extract's line order, a fresh random permutation per extract).
The target (issue 17) is ``|rho| < 0.05`` after, in every extract.

    .venv/bin/python bench/order_leak.py                         # 12,000 households each
    .venv/bin/python bench/order_leak.py --households 40000 --council-households 0

Under a random order rho has a standard deviation of about 1/sqrt(n): the
``sd`` column says how large a figure chance alone gives for that extract.
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from evaluation import ExtractOrder, measure_council, measure_synthetic


def _print(title: str, found: list[ExtractOrder]) -> bool:
    print(f"\n{title}")
    print(f"{'extract':<20}{'records':>9}{'before':>10}{'after':>10}{'sd':>8}")
    ok = True
    for e in found:
        sd = 1 / math.sqrt(max(e.lines.records - 1, 1))
        ok &= abs(e.lines.rho) < 0.05
        print(
            f"{e.agency:<20}{e.lines.records:>9,}{e.rows.rho:>10.3f}{e.lines.rho:>10.3f}{sd:>8.3f}"
        )
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--households", type=int, default=12_000, help="synthetic (0: skip)")
    ap.add_argument("--council-households", type=int, default=12_000, help="council (0: skip)")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    print(f"order leak bench: python {platform.python_version()}, {platform.machine()}")
    work = Path(tempfile.mkdtemp(prefix="order-leak-"))
    ok = True
    try:
        if args.households:
            started = time.perf_counter()
            found = measure_synthetic(
                args.households, work / "synthetic", seed=args.seed, workers=args.workers
            )
            ok &= _print(
                f"agency_client._synthetic, {args.households:,} households, seed {args.seed} "
                f"({time.perf_counter() - started:.0f} s)",
                found,
            )
        if args.council_households:
            started = time.perf_counter()
            found = measure_council(
                args.council_households, work / "council", seed=args.seed, workers=args.workers
            )
            ok &= _print(
                f"evaluation council, {args.council_households:,} households, seed {args.seed} "
                f"({time.perf_counter() - started:.0f} s)",
                found,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nafter: |rho| < 0.05 in every extract: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
