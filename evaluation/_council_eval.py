"""Linkage and eligibility quality on the independent council population (``_council``).

:func:`evaluate_council` writes a generated council to disk, encodes every
agency file through the real agency client with its mapping file (keys drawn
fresh for the run, one row kept per system id as the linkage service demands,
bad cells dropped as an agency running ``--on-bad drop-field`` would), loads
the extracts with the harness's helpers, links them with
:class:`linkage_service._engine.LinkageEngine` at its shipped defaults and
scores persons and households pairwise against the generator's truth.

Eligibility: the programme's default ruleset and risk model assess every
household twice over the same encoded records and indicators, once grouped
as the engine linked them and once grouped by the truth. The truth's
eligible families are the *truly eligible* ones. Each member of a household
(a person with records) is placed in the other side's household holding most
of its records; a truly eligible family is *found* when a predicted eligible
household holds more than half of its members, and a predicted eligible
household is *correct* when a truly eligible household holds more than half
of its members. What differs between the two assessments is the linkage
alone.

For tests and benchmarks only; no service imports it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import tempfile
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from linkage_service._batch import RecordBatch
from linkage_service._engine import LinkageEngine
from linkage_service._matchmodel import MatchModel
from linkage_service.programme._programme import (
    Event,
    FamilyInput,
    MemberInput,
    Plan,
    assess_family,
)
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from protocols import LinkageSchema

from ._council import AgencyExtract, CouncilPopulation, write_council
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

__all__ = [
    "CouncilScores",
    "EligibilityScores",
    "EncodedCouncil",
    "EncodedRecord",
    "assess_eligibility",
    "encode_council",
    "evaluate_council",
]


@dataclass(frozen=True)
class EncodedRecord:
    """What the assessment needs of one encoded record (row order of the batch)."""

    agency_id: str
    record_ref: str
    extract_type: str
    age: int | None
    sex: str | None
    district: str | None
    events: tuple[Event, ...]
    age_band: str | None = None  # from 25 (extract v2) a band instead of an age


@dataclass
class EncodedCouncil:
    """A council's extracts encoded and loaded, with the truth row for row."""

    batch: RecordBatch
    records: list[EncodedRecord]
    truth_person: list[str]
    truth_household: list[str]
    rows_read: dict[str, int]  # per agency: rows sent to the encoder
    repeats_removed: dict[str, int]  # per agency: rows left out for a system id seen before
    fields_dropped: dict[str, int]  # per agency: cells the encoder refused
    extract_date: dt.date
    workdir: Path


@dataclass(frozen=True)
class EligibilityScores:
    """Eligible families found through the linkage against those of the true households."""

    true_eligible: int
    found: int
    predicted_eligible: int
    correct: int

    @property
    def recall(self) -> float:
        return self.found / self.true_eligible if self.true_eligible else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.predicted_eligible if self.predicted_eligible else 1.0

    def __str__(self) -> str:
        return (
            f"recall {self.recall:.4f} ({self.found:,} of {self.true_eligible:,} truly eligible "
            f"families found) precision {self.precision:.4f} ({self.correct:,} of "
            f"{self.predicted_eligible:,} predicted eligible)"
        )


@dataclass(frozen=True)
class CouncilScores:
    """Pairwise linkage quality and, when asked for, eligibility quality."""

    persons: PairScores
    households: PairScores
    records: int
    rows_read: dict[str, int]
    repeats_removed: dict[str, int]
    fields_dropped: dict[str, int]
    eligibility: EligibilityScores | None
    model: MatchModel | None = None  # the match model the engine estimated


def _first_row_per_id(extract: AgencyExtract, path: Path, removed: dict[str, int]) -> Path:
    """The extract as the agency sends it: one row per system id, the first one kept.

    The linkage service refuses an extract in which two records share a record
    ref, so an agency whose file repeats a system id (a row exported twice, one
    person keyed twice under one id) must drop the later rows before sending.
    """
    system_id = tomllib.loads(extract.mapping_toml)["identity"]["system_id"]
    column = extract.header.index(system_id)
    seen: set[str] = set()
    rows = []
    for row in extract.rows:
        if row[column] not in seen:
            seen.add(row[column])
            rows.append(row)
    removed[extract.agency_id] = len(extract.rows) - len(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(extract.header)
        writer.writerows(rows)
    return path


def encode_council(
    population: CouncilPopulation,
    workdir: Path,
    schema: LinkageSchema | None = None,
    *,
    workers: int = 1,
    secret_seed: int | None = None,
) -> EncodedCouncil:
    """Write, encode (as each agency would, with its mapping file) and load ``population``.

    The generated files (repeats and all) go to ``workdir/population``; what
    each agency sends, one row per system id, to ``workdir/sent``. ``workdir``
    must be empty or absent: each run draws its own keys and secret. The
    habit-ful files of social care and early help key the council's person id
    as ``identity.identifiers.local_person_id``: ``schema`` must then declare
    that local identifier. ``secret_seed`` fixes the linkage secret (see
    :meth:`SchemeKeys.make`) and the order of each extract's records
    (:func:`fixed_order`): the same figures every run.
    """
    from agency_client import record_ref
    from protocols import default_schema

    if workdir.exists() and any(workdir.iterdir()):
        raise ValueError(f"{workdir} is not empty: each run draws new keys into an empty directory")
    schema = schema or default_schema()
    at = population.config.extract_date
    data = write_council(population, workdir / "population")
    keys = SchemeKeys.make(workdir / "keys", secret_seed)
    batches: list[RecordBatch] = []
    records: list[EncodedRecord] = []
    truth_person: list[str] = []
    truth_household: list[str] = []
    rows_read: dict[str, int] = {}
    removed: dict[str, int] = {}
    dropped: dict[str, int] = {}
    (workdir / "problems").mkdir(parents=True, exist_ok=True)
    next_id = 1
    for index, (agency, extract) in enumerate(sorted(population.extracts.items())):
        out = workdir / "extracts" / f"{agency}.jsonl"
        summary, key = keys.encode(
            agency,
            _first_row_per_id(extract, workdir / "sent" / f"{agency}.csv", removed),
            data / f"{agency}.mapping.toml",
            schema,
            out,
            at,
            workers=workers,
            problems=workdir / "problems" / f"{agency}.csv",
        )
        if secret_seed is not None:
            fixed_order(out, key, secret_seed)
        rows_read[agency] = summary.rows_read
        dropped[agency] = summary.fields_dropped
        truth = {
            record_ref(key.record_ref_key, a, sid): labels
            for (a, sid), labels in population.truth.items()
            if a == agency
        }
        with out.open("rb") as fh:
            lines = list(_record_lines(fh))
        batch, refs = batch_from_lines(lines, index, next_id)
        batch.extract_day[:] = (at - EPOCH).days
        next_id += len(batch)
        batches.append(batch)
        for raw, ref in zip(lines, refs, strict=True):
            rec = json.loads(raw)
            events = tuple(
                Event(i["type"], float(i["value"]), dt.date.fromisoformat(i["date"]), agency, ref)
                for i in rec.get("indicators", ())
            )
            age = rec.get("age")
            records.append(
                EncodedRecord(
                    agency,
                    ref,
                    extract.extract_type,
                    None if age is None or age < 0 else int(age),
                    rec.get("sex") or None,
                    rec.get("postcode_district") or None,
                    events,
                    rec.get("age_band"),
                )
            )
            person, household = truth[ref]
            truth_person.append(person)
            truth_household.append(household)
    return EncodedCouncil(
        concat(batches),
        records,
        truth_person,
        truth_household,
        rows_read,
        removed,
        dropped,
        at,
        workdir,
    )


def _families(
    records: Sequence[EncodedRecord],
    person: Sequence[str],
    household: Sequence[str],
    as_at: dt.date,
) -> list[FamilyInput]:
    """Households of persons of records, as the linkage service's assessment loads them."""
    rows_of: dict[str, list[int]] = {}
    for row, pid in enumerate(person):
        rows_of.setdefault(pid, []).append(row)
    members: dict[str, list[MemberInput]] = {}
    district_of: dict[str, str] = {}
    for pid, rows in rows_of.items():
        recs = [records[r] for r in rows]
        latest = recs[-1]  # one extract date: the last loaded record stands for the person
        events = tuple(e for r in recs for e in r.events)
        types = {e.type for e in events}
        ages = [r.age for r in recs if r.age is not None]
        dependent = any(a <= 15 for a in ages) or (
            any(16 <= a <= 18 for a in ages) and "in_education_or_training" in types
        )
        sex = latest.sex or next((r.sex for r in recs if r.sex), None)
        district = latest.district or next((r.district for r in recs if r.district), None)
        hid = household[rows[0]]
        if district and hid not in district_of:
            district_of[hid] = district
        members.setdefault(hid, []).append(
            MemberInput(
                person_id=pid,
                age=latest.age,
                age_band=latest.age_band,
                age_date=as_at,
                sex=sex,
                records=tuple(sorted((r.agency_id, r.record_ref, r.extract_type) for r in recs)),
                events=events,
                dependent=dependent,
                expectant="expectant_parent" in types,
            )
        )
    return [
        FamilyInput(
            family_id=hid,
            household_id=hid,
            district=district_of.get(hid),
            members=tuple(sorted(members[hid], key=lambda m: m.person_id)),
        )
        for hid in sorted(members)
    ]


def _eligible(families: Sequence[FamilyInput], as_at: dt.date) -> dict[str, bool]:
    ruleset, model = default_ruleset(), default_model()
    plan = Plan.build(ruleset)
    return {
        f.household_id: assess_family(
            f, ruleset, model, as_at, with_evidence=False, plan=plan
        ).eligible
        for f in families
    }


def _held_by(
    person: Sequence[str], household: Sequence[str], other: Sequence[str]
) -> dict[str, str]:
    """Household -> the ``other`` household holding more than half of its members, if any.

    ``person`` and ``household`` label the records on one side, ``other`` the
    households on the other side; a member counts for the other side's household
    holding most of its records.
    """
    votes: dict[str, Counter[str]] = {}
    home: dict[str, str] = {}
    for p, h, o in zip(person, household, other, strict=True):
        votes.setdefault(p, Counter())[o] += 1
        home[p] = h
    members: dict[str, Counter[str]] = {}
    for p, counter in votes.items():
        members.setdefault(home[p], Counter())[counter.most_common(1)[0][0]] += 1
    out: dict[str, str] = {}
    for h, counter in members.items():
        best, n = counter.most_common(1)[0]
        if 2 * n > counter.total():
            out[h] = best
    return out


def assess_eligibility(
    encoded: EncodedCouncil, person: Sequence[str], household: Sequence[str]
) -> EligibilityScores:
    """Eligibility of the predicted households against that of the true ones (module doc)."""
    at = encoded.extract_date
    truth_p, truth_h = encoded.truth_person, encoded.truth_household
    true_ok = _eligible(_families(encoded.records, truth_p, truth_h, at), at)
    pred_ok = _eligible(_families(encoded.records, person, household, at), at)
    holder = _held_by(truth_p, truth_h, household)  # true household -> predicted
    source = _held_by(person, household, truth_h)  # predicted household -> true
    true_eligible = [t for t, ok in true_ok.items() if ok]
    predicted_eligible = [p for p, ok in pred_ok.items() if ok]
    found = sum(1 for t in true_eligible if t in holder and pred_ok[holder[t]])
    correct = sum(1 for p in predicted_eligible if p in source and true_ok[source[p]])
    return EligibilityScores(len(true_eligible), found, len(predicted_eligible), correct)


def evaluate_council(
    population: CouncilPopulation,
    schema: LinkageSchema | None = None,
    *,
    workdir: Path | None = None,
    workers: int = 1,
    eligibility: bool = True,
    secret_seed: int | None = None,
) -> CouncilScores:
    """Encode, link and score ``population``: persons, households and (optionally) eligibility.

    Without ``workdir`` the files go to a temporary directory removed at the end;
    ``secret_seed`` makes the figures repeat (:func:`encode_council`).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="council-eval-") as tmp:
            return evaluate_council(
                population,
                schema,
                workdir=Path(tmp),
                workers=workers,
                eligibility=eligibility,
                secret_seed=secret_seed,
            )
    encoded = encode_council(population, workdir, schema, workers=workers, secret_seed=secret_seed)
    batch = encoded.batch
    engine = LinkageEngine()
    delta = engine.update(batch, [])
    row_of = {int(r): i for i, r in enumerate(batch.ids.tolist())}
    person = [""] * len(batch)
    for rid, pid in delta.person_of.items():
        person[row_of[rid]] = pid
    # a person the engine placed in no household is a household of their own
    household = [delta.household_of.get(p) or f"alone:{p}" for p in person]
    return CouncilScores(
        persons=pair_scores(person, encoded.truth_person),
        households=pair_scores(household, encoded.truth_household),
        records=len(batch),
        rows_read=encoded.rows_read,
        repeats_removed=encoded.repeats_removed,
        fields_dropped=encoded.fields_dropped,
        eligibility=assess_eligibility(encoded, person, household) if eligibility else None,
        model=engine.model,
    )
