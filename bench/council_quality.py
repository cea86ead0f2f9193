"""Linkage and eligibility quality on the independent council population.

The matcher was tuned on the agency client's own generator; this bench scores
it on ``evaluation._council``, written apart from that generator, with seven
agencies' own export habits. Each run generates a council, encodes every agency
file with the real agency client and its mapping file (fresh keys), links with
the engine at its shipped defaults, and prints person and household pair
precision, recall and F1, and eligible-family recall and precision under the
default ruleset (see ``evaluation/_council_eval.py``).

``--habits`` writes the agencies' own layouts (one-column names, several date
formats, derived columns); their mapping files need the ``[[derive]]``,
``date_formats`` and ``[identity.identifiers]`` mapping syntax, and a schema
(``--schema``) that declares the local identifier ``local_person_id`` (social
care and early help key the council's person id). Without it the same records
are written in plain separate columns.

    .venv/bin/python bench/council_quality.py                      # 3,000 households, plain
    .venv/bin/python bench/council_quality.py --seeds 1 2 3 --households 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--households", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[20261203])
    ap.add_argument("--habits", action="store_true", help="the agencies' own layouts")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--schema", type=Path, help="a linkage schema file (default: the shipped one)")
    args = ap.parse_args()

    from agency_client import load_schema
    from evaluation._council import CouncilConfig, generate_council
    from evaluation._council_eval import evaluate_council

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {dt.date.today().isoformat()}"
    )
    print(f"variant: {'habits' if args.habits else 'plain'}; engine and ruleset: shipped defaults")
    for seed in args.seeds:
        t0 = time.perf_counter()
        config = CouncilConfig(households=args.households, seed=seed, plain=not args.habits)
        pop = generate_council(config)
        people = len(pop.persons())
        families = sum(pop.families().values())
        with tempfile.TemporaryDirectory(prefix="council-bench-") as work:
            scores = evaluate_council(
                pop, load_schema(args.schema), workdir=Path(work), workers=args.workers
            )
        rows = ", ".join(f"{a} {n:,}" for a, n in sorted(scores.rows_read.items()))
        dropped = sum(scores.fields_dropped.values())
        repeats = sum(scores.repeats_removed.values())
        print(
            f"seed {seed}: {args.households:,} households ({families:,} families), "
            f"{people:,} people, {scores.records:,} records ({rows}); {repeats} rows with a "
            f"repeated system id kept back; {dropped} cells refused by the encoder; "
            f"{time.perf_counter() - t0:.1f}s"
        )
        print(f"    persons:     {scores.persons}")
        print(f"    households:  {scores.households}")
        print(f"    eligibility: {scores.eligibility}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
