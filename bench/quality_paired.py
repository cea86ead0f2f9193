"""Paired differences between two quality matrices run under the same seeded secrets.

``bench/quality_matrix.py --secrets N --json FILE`` writes every secret's
figures; two such files, one per schema and with the same seeds, pair up row by
row (same data set, same secret), so the secret-to-secret spread that both
schemas share drops out of the comparison. For each data set and figure this
prints the mean of ``other - base``, its standard deviation, the lowest and
highest single difference, and how many secrets lost more than ``--margin``.

    .venv/bin/python bench/quality_matrix.py --secrets 8 --json v1.json \\
        --schema docs/schemas/person-unhardened-v1.json
    .venv/bin/python bench/quality_matrix.py --secrets 8 --json v2.json
    .venv/bin/python bench/quality_paired.py v1.json v2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# (label, figure kind, index in its tuple)
FIGURES = (
    ("persons F1", "persons", 2),
    ("persons P", "persons", 0),
    ("persons R", "persons", 1),
    ("households F1", "households", 2),
    ("eligible recall", "eligibility", 0),
    ("eligible precision", "eligibility", 1),
)


def _runs(path: Path) -> tuple[dict[str, object], dict[tuple[str, int], dict[str, list[float]]]]:
    written = json.loads(path.read_text())
    by_key = {}
    for run in written["runs"]:
        if run["secret"] is None:
            raise SystemExit(f"{path}: a run with a fresh secret cannot be paired (use --secrets)")
        by_key[(run["data_set"], run["secret"])] = run
    return written, by_key


def paired(
    base: dict[tuple[str, int], dict[str, list[float]]],
    other: dict[tuple[str, int], dict[str, list[float]]],
    kind: str,
    index: int,
) -> dict[str, list[float]]:
    """Data set -> ``other - base`` of one figure for every secret both files hold."""
    out: dict[str, list[float]] = {}
    for key in sorted(base.keys() & other.keys()):
        if kind in base[key] and kind in other[key]:
            out.setdefault(key[0], []).append(other[key][kind][index] - base[key][kind][index])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("base", type=Path, help="quality_matrix.py --json file of the reference")
    ap.add_argument("other", type=Path, help="the same, of the schema compared with it")
    ap.add_argument("--margin", type=float, default=0.005, help="a loss larger than this counts")
    args = ap.parse_args()

    base_meta, base = _runs(args.base)
    other_meta, other = _runs(args.other)
    print(f"other - base: {args.other} ({other_meta['schema']}), base: {args.base}")
    print(
        "| data set | figure | secrets | base mean | other mean | mean diff | sd "
        f"| lowest | highest | secrets losing > {args.margin} |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, kind, index in FIGURES:
        for data_set, diffs in paired(base, other, kind, index).items():
            keys = [k for k in sorted(base.keys() & other.keys()) if k[0] == data_set]
            b = statistics.fmean(base[k][kind][index] for k in keys)
            o = statistics.fmean(other[k][kind][index] for k in keys)
            sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            losing = sum(d < -args.margin for d in diffs)
            print(
                f"| {data_set} | {label} | {len(diffs)} | {b:.4f} | {o:.4f} "
                f"| {statistics.fmean(diffs):+.4f} | {sd:.4f} | {min(diffs):+.4f} "
                f"| {max(diffs):+.4f} | {losing} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
