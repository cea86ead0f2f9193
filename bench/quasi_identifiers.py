"""Quasi-identifiers: how many people are unique on what the linkage service holds in clear?

Generates a synthetic population (the agency client's generator, and the
independent council generator of ``evaluation/``), encodes every agency's CSV
exactly as ``agency-client encode`` does, and measures k-anonymity (see
``evaluation/_quasi.py``) of the clear attributes:

- **before** (extract v1): age in whole years at the extract date, sex and
  postcode district on every record. Read from the sealed identities (date of
  birth, postcode) with the unlock key the bench made, since v2 no longer sends
  them; the sex is the record's own.
- **after** (extract v2): what the extract lines carry: ``age`` (under 25) or
  ``age_band``, ``sex``, ``postcode_district`` (children's and expectant
  parents' records only).

Per record, ``k`` counts the distinct persons carrying the record's values; per
person, the values most of the person's records carry (true persons: the
service's linked persons are within about 1% of them). Issue 17 measured 20.9%
of 33,774 persons unique before (60,230 records, about 12,000 households).

    .venv/bin/python bench/quasi_identifiers.py                      # 12,000 households each
    .venv/bin/python bench/quasi_identifiers.py --households 3000 --council-households 0
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path

from evaluation._quasi import KAnonymity, summarise

Values = tuple[Hashable, ...]


def _age(dob: dt.date, at: dt.date) -> int:
    return at.year - dob.year - ((at.month, at.day) < (dob.month, dob.day))


def _lines(extract: Path) -> Iterator[tuple[dt.date, dict[str, object]]]:
    with extract.open("rb") as fh:
        header = json.loads(fh.readline())
        at = dt.date.fromisoformat(header["extract_date"])
        pending: bytes | None = None
        for raw in fh:
            if pending is not None:
                yield at, json.loads(pending)
            pending = raw


class _Held:
    """Clear values per record, before and after, with the record's true person."""

    def __init__(self) -> None:
        self.before: list[Values] = []
        self.after: list[Values] = []
        self.person: list[str] = []
        self.mismatch = 0  # records whose v2 district differs from the v1 one

    def read(
        self,
        extract: Path,
        agency: str,
        ref_key: bytes,
        person_of: Mapping[tuple[str, str], str],
        seal_key: object,
    ) -> None:
        from agency_client import record_ref
        from protocols import open_sealed_identity

        by_ref = {
            record_ref(ref_key, a, sid): p for (a, sid), p in person_of.items() if a == agency
        }
        for at, rec in _lines(extract):
            ident = open_sealed_identity(str(rec["sealed_identity"]), seal_key)  # type: ignore[arg-type]
            age = None if ident.date_of_birth is None else _age(ident.date_of_birth, at)
            pc = ident.postcode
            district = pc.split(" ")[0] if pc and " " in pc else None
            sent = rec.get("postcode_district")
            if sent is not None and sent != district:
                self.mismatch += 1
            self.before.append((age, rec.get("sex"), district))
            self.after.append((rec.get("age", rec.get("age_band")), rec.get("sex"), sent))
            self.person.append(by_ref[str(rec["record_ref"])])


def _synthetic(households: int, seed: int, work: Path, workers: int) -> _Held:
    from agency_client import load_agency_key
    from agency_client._synthetic import PopulationConfig, generate_population
    from evaluation._harness import SchemeKeys
    from protocols import default_schema, load_seal_private_key

    config = PopulationConfig(households=households, seed=seed)
    pop = generate_population(config, work / "population")
    with (pop.truth_dir / "records.csv").open(newline="", encoding="utf-8") as fh:
        person_of = {(r["agency"], r["system_id"]): r["person_id"] for r in csv.DictReader(fh)}
    keys = SchemeKeys.make(work / "keys")
    seal = load_seal_private_key(work / "keys" / "unlock" / "seal.key")
    held = _Held()
    for agency in pop.agencies:
        extract = work / "extracts" / f"{agency}.jsonl"
        keys.encode(
            agency,
            pop.csv_paths[agency],
            pop.mapping_paths[agency],
            default_schema(),
            extract,
            config.extract_date,
            workers=workers,
        )
        key = load_agency_key(work / "keys" / agency / "agency.key")
        held.read(extract, agency, key.record_ref_key, person_of, seal)
    return held


def _council(households: int, seed: int, work: Path, workers: int) -> _Held:
    from agency_client import load_agency_key
    from evaluation._council import CouncilConfig, generate_council
    from evaluation._council_eval import encode_council
    from protocols import load_seal_private_key

    population = generate_council(CouncilConfig(households=households, seed=seed, plain=True))
    person_of = {key: person for key, (person, _) in population.truth.items()}
    encode_council(population, work, workers=workers)
    seal = load_seal_private_key(work / "keys" / "unlock" / "seal.key")
    held = _Held()
    for agency in sorted(population.extracts):
        key = load_agency_key(work / "keys" / agency / "agency.key")
        held.read(
            work / "extracts" / f"{agency}.jsonl", agency, key.record_ref_key, person_of, seal
        )
    return held


def _row(what: str, k: KAnonymity) -> str:
    return (
        f"| {what} | {k.n:,} | {k.classes:,} | {k.unique:.1%} | {k.below_5:.1%} | {k.min_k} "
        f"| {k.median_k:g} |"
    )


def _print(title: str, held: _Held, seconds: float) -> None:
    rec_b, per_b = summarise(held.before, held.person)
    rec_a, per_a = summarise(held.after, held.person)
    with_district = sum(1 for v in held.after if v[2] is not None) / max(len(held.after), 1)
    exact_age = sum(1 for v in held.after if isinstance(v[0], int)) / max(len(held.after), 1)
    print(f"\n{title} ({seconds:.0f} s)")
    print("| held in clear | n | combinations | unique (k=1) | k<5 | min k | median k |")
    print("|---|---|---|---|---|---|---|")
    print(_row("before (v1): age, sex, district; persons", per_b))
    print(_row("before (v1): records", rec_b))
    print(_row("after (v2): age <25 or band, sex, district of children; persons", per_a))
    print(_row("after (v2): records", rec_a))
    print(
        f"after: {exact_age:.1%} of records carry an age in years, {with_district:.1%} a "
        f"district; v2 districts differing from v1's: {held.mismatch}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--households", type=int, default=12_000, help="synthetic (0: skip)")
    ap.add_argument("--council-households", type=int, default=12_000, help="council (0: skip)")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--council-seed", type=int, default=20261203)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    print(f"quasi-identifier bench: python {platform.python_version()}, {platform.machine()}")
    work = Path(tempfile.mkdtemp(prefix="quasi-identifiers-"))
    try:
        if args.households:
            started = time.process_time()
            held = _synthetic(args.households, args.seed, work / "synthetic", args.workers)
            _print(
                f"agency client generator, {args.households:,} households",
                held,
                time.process_time() - started,
            )
        if args.council_households:
            started = time.process_time()
            held = _council(args.council_households, args.council_seed, work / "council", 1)
            _print(
                f"council generator, {args.council_households:,} households",
                held,
                time.process_time() - started,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
