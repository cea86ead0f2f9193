"""Rows of the linkage service's bulk export: one model per kind, one row per line.

``GET /export/{kind}`` and ``linkage-service export`` stream these rows as
NDJSON (one JSON object per line) or as Parquet (the same fields as columns;
a pair's ``evidence`` is a JSON text column there). Every id is pseudonymous:
records are named by the service's id, the agency and the agency's own record
ref; persons, households and families by their ``per_``/``hh_``/``fam_`` ids.
No model here has a field for a name, a date of birth or an address, and none
carries a sealed blob.

Must never: import anything but pydantic and the standard library.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from ._review import RecordRef, ReviewImpact

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_KINDS",
    "ExportFamily",
    "ExportFormat",
    "ExportHousehold",
    "ExportKind",
    "ExportPair",
    "ExportPerson",
    "ExportReviewPair",
]

ExportKind = Literal["persons", "households", "families", "links", "review"]
ExportFormat = Literal["ndjson", "parquet"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("persons", "households", "families", "links", "review")
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("ndjson", "parquet")


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportPerson(_Row):
    """A current person, its household (None: none yet) and its active records."""

    person_id: str
    household_id: str | None
    records: list[RecordRef]


class ExportHousehold(_Row):
    """A current household and its persons (ids, sorted)."""

    household_id: str
    persons: list[str]


class ExportFamily(_Row):
    """A family as the latest assessment cycle scored it, with its status now.

    ``members`` are the persons the cycle assessed (the snapshot's own list).
    """

    family_id: str
    household_id: str
    cycle_id: int
    members: list[str]
    eligible: bool
    problems: int
    score: int
    rank: int
    percentile: float
    clearance_required: int
    postcode_district: str | None
    status: str | None  # None: never given a status (not identified)


class ExportPair(_Row):
    """A link between two records: the match probability and its evidence."""

    a: RecordRef
    b: RecordRef
    score: float
    evidence: dict[str, JsonValue]
    run_id: int


class ExportReviewPair(_Row):
    """A pair awaiting clerical review: probability, evidence and impact as last assessed."""

    a: RecordRef
    b: RecordRef
    score: float
    uncertainty: float
    impact: ReviewImpact | None
    impact_cycle: int | None
    evidence: dict[str, JsonValue]
    run_id: int
