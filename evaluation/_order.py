"""Does where a record sits in an extract say which household it belongs to?

Agencies' files are often sorted by household, address or case: if extract
lines followed the rows, a linkage operator holding the extracts could group
neighbouring lines into households without matching anything. This module
measures that signal against a synthetic population's truth: the Spearman rank
correlation between a record's position (its CSV row, or its extract line) and
the index of its true household in the generator's order. Near 0 means the
order says nothing; the agency client's shuffled extracts should give
``|rho| < 0.05`` in every extract of a large population.

For tests and benchmarks only; it reads plaintext synthetic truth.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "ExtractOrder",
    "OrderSignal",
    "council_household_index",
    "extract_households",
    "measure_council",
    "measure_synthetic",
    "order_signal",
    "row_households",
    "spearman",
    "synthetic_household_index",
]


def _ranks(values: Sequence[float]) -> npt.NDArray[np.float64]:
    """Ranks from 0, ties sharing the mean of the ranks they span."""
    a = np.asarray(values, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    ordered = a[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, a.size])
    group = np.repeat(np.arange(starts.size), sizes)
    out = np.empty(a.size, dtype=np.float64)
    out[order] = (starts + (sizes - 1) / 2.0)[group]
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of two equal-length sequences (ties: mean ranks).

    0.0 when either sequence is constant (no order to correlate).
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values, y has {len(y)}")
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    den = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return 0.0 if den == 0.0 else float((rx * ry).sum() / den)


@dataclass(frozen=True)
class OrderSignal:
    """The order-household correlation of one file."""

    records: int
    rho: float


def order_signal(households: Sequence[int]) -> OrderSignal:
    """Correlation of position (0, 1, 2, ...) with the household index at each position."""
    return OrderSignal(len(households), spearman(range(len(households)), households))


def synthetic_household_index(truth_dir: Path) -> dict[tuple[str, str], int]:
    """``(agency, system id)`` -> household index, from ``agency_client._synthetic``'s truth.

    The index is the household's position in ``truth/households.csv``, the
    order the generator made them in (and wrote the agencies' rows in).
    """
    with (truth_dir / "households.csv").open(newline="", encoding="utf-8") as fh:
        index = {row["household_id"]: i for i, row in enumerate(csv.DictReader(fh))}
    with (truth_dir / "records.csv").open(newline="", encoding="utf-8") as fh:
        return {(r["agency"], r["system_id"]): index[r["household_id"]] for r in csv.DictReader(fh)}


def council_household_index(population: object) -> dict[tuple[str, str], int]:
    """``(agency, system id)`` -> household index, from a :class:`CouncilPopulation`."""
    from ._council import CouncilPopulation

    if not isinstance(population, CouncilPopulation):
        raise TypeError(f"expected a CouncilPopulation, got {type(population).__name__}")
    index = {h.household_id: i for i, h in enumerate(population.households)}
    return {key: index[hid] for key, (_, hid) in population.truth.items()}


def row_households(
    csv_path: Path,
    mapping_path: Path,
    agency: str,
    household_of: Mapping[tuple[str, str], int],
) -> list[int]:
    """Household index of each CSV row in row order (what an unshuffled extract would show).

    The system id is read with the agency's mapping (its column, delimiter and
    encoding); rows whose system id the truth does not know are left out.
    """
    from agency_client import load_mapping

    mapping = load_mapping(mapping_path)
    with csv_path.open(newline="", encoding=mapping.csv.encoding) as fh:
        rows = csv.DictReader(fh, delimiter=mapping.csv.delimiter)
        column = mapping.identity.system_id
        ids = (row[column].strip() for row in rows)
        return [household_of[(agency, sid)] for sid in ids if (agency, sid) in household_of]


def extract_households(
    extract: Path,
    agency: str,
    record_ref_key: bytes,
    household_of: Mapping[tuple[str, str], int],
) -> list[int]:
    """Household index of each record of an extract, in line order.

    The agency's record ref key maps a system id to its ref (what the agency
    itself can do, and the linkage operator cannot); every line must be known.
    """
    from agency_client import record_ref

    by_ref = {
        record_ref(record_ref_key, a, sid): h for (a, sid), h in household_of.items() if a == agency
    }
    return [by_ref[ref] for ref in _refs(extract)]


def _refs(extract: Path) -> Iterable[str]:
    with extract.open("rb") as fh:
        fh.readline()  # the header
        pending: bytes | None = None
        for raw in fh:
            if pending is not None:
                yield str(json.loads(pending)["record_ref"])
            pending = raw


@dataclass(frozen=True)
class ExtractOrder:
    """One agency's extract: the order signal of its CSV rows and of its extract lines."""

    agency: str
    rows: OrderSignal  # CSV row order (what the extract showed before it was shuffled)
    lines: OrderSignal  # extract line order


def measure_synthetic(
    households: int, workdir: Path, *, seed: int = 20261121, workers: int = 1
) -> list[ExtractOrder]:
    """Generate an ``agency_client._synthetic`` population, encode it, measure every extract.

    The population is seeded (``seed``); the shuffle never is. ``workdir`` must
    be empty or absent.
    """
    from agency_client import load_agency_key
    from agency_client._synthetic import PopulationConfig, generate_population
    from protocols import default_schema

    from ._harness import SchemeKeys

    _refuse_used(workdir)
    config = PopulationConfig(households=households, seed=seed)
    pop = generate_population(config, workdir / "population")
    household_of = synthetic_household_index(pop.truth_dir)
    keys = SchemeKeys.make(workdir / "keys")
    out: list[ExtractOrder] = []
    for agency in pop.agencies:
        extract = workdir / "extracts" / f"{agency}.jsonl"
        keys.encode(
            agency,
            pop.csv_paths[agency],
            pop.mapping_paths[agency],
            default_schema(),
            extract,
            config.extract_date,
            workers=workers,
        )
        key = load_agency_key(workdir / "keys" / agency / "agency.key")
        rows = row_households(
            pop.csv_paths[agency], pop.mapping_paths[agency], agency, household_of
        )
        lines = extract_households(extract, agency, key.record_ref_key, household_of)
        out.append(ExtractOrder(agency, order_signal(rows), order_signal(lines)))
    return out


def measure_council(
    households: int, workdir: Path, *, seed: int = 20261203, workers: int = 1
) -> list[ExtractOrder]:
    """The same for the independent council generator (``evaluation._council``), plain files."""
    from agency_client import load_agency_key

    from ._council import CouncilConfig, generate_council
    from ._council_eval import encode_council

    _refuse_used(workdir)
    population = generate_council(CouncilConfig(households=households, seed=seed, plain=True))
    household_of = council_household_index(population)
    encode_council(population, workdir, workers=workers)
    out: list[ExtractOrder] = []
    for agency in sorted(population.extracts):
        sent = workdir / "sent" / f"{agency}.csv"  # one row per system id, as encoded
        mapping = workdir / "population" / f"{agency}.mapping.toml"
        key = load_agency_key(workdir / "keys" / agency / "agency.key")
        extract = workdir / "extracts" / f"{agency}.jsonl"
        rows = row_households(sent, mapping, agency, household_of)
        lines = extract_households(extract, agency, key.record_ref_key, household_of)
        out.append(ExtractOrder(agency, order_signal(rows), order_signal(lines)))
    return out


def _refuse_used(workdir: Path) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        raise ValueError(f"{workdir} is not empty: each run draws new keys into an empty directory")
