"""FEBRL quality across linkage secrets: the spread one data set shows from key to key.

The linkage secret decides every filter bit, so two key ceremonies link the same
records a little differently; a default must hold on the worst secret a council
might draw, not on the mean. This links FEBRL4 and FEBRL3 under ``--secrets``
seeded secrets at shipped defaults and prints, per data set, the mean and worst
person precision, recall and F1, and how many secrets left precision below 0.98.

    .venv/bin/python bench/febrl_secrets.py
    .venv/bin/python bench/febrl_secrets.py --secrets 100 --first 1000 --only febrl3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

DATASETS = ("febrl4", "febrl3")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--secrets", type=int, default=40, help="how many seeded secrets")
    ap.add_argument("--first", type=int, default=0, help="the first secret seed")
    ap.add_argument("--only", nargs="+", choices=DATASETS, default=list(DATASETS))
    args = ap.parse_args()

    from evaluation._febrl import run_febrl
    from protocols import default_schema

    print(f"secrets {args.first}..{args.first + args.secrets - 1}, shipped defaults")
    print("| data set | mean P / R / F1 | worst P | worst F1 | secrets with P < 0.98 | seconds |")
    print("|---|---|---|---|---|---|")
    for name in args.only:
        t0 = time.perf_counter()
        scores = []
        for seed in range(args.first, args.first + args.secrets):
            with tempfile.TemporaryDirectory(prefix=f"{name}-") as work:
                r = run_febrl(name, default_schema(), workdir=Path(work), secret_seed=seed)
            scores.append((r.persons.precision, r.persons.recall, r.persons.f1))
        n = len(scores)
        mean = [sum(s[k] for s in scores) / n for k in range(3)]
        low = sum(p < 0.98 for p, _r, _f in scores)
        print(
            f"| {name} | {mean[0]:.4f} / {mean[1]:.4f} / {mean[2]:.4f} "
            f"| {min(s[0] for s in scores):.4f} | {min(s[2] for s in scores):.4f} "
            f"| {low} of {n} | {time.perf_counter() - t0:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
