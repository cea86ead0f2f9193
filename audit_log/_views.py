"""The audit log's HTTP answers as pydantic models, so its OpenAPI describes them.

An entry is the tagged union ``Entry`` (its own ``type`` field picks the
model), so every entry field is described too; the leaf is the exact stored
bytes, for a client to hash against a checkpoint.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._entries import Entry

__all__ = [
    "AnomalyItem",
    "AnomalyReport",
    "Appended",
    "ConsistencyProof",
    "DailyUnlocksItem",
    "EntryItem",
    "EntryPage",
    "InclusionProof",
]

_MODEL = ConfigDict(extra="forbid", frozen=True)


class InclusionProof(BaseModel):
    """RFC 6962 inclusion proof of leaf ``index`` in the tree of ``size`` (base64 hashes)."""

    model_config = _MODEL

    index: int = Field(ge=0)
    size: int = Field(ge=1)
    hashes: list[str]


class ConsistencyProof(BaseModel):
    """RFC 6962 consistency proof from tree size ``old`` to ``new`` (base64 hashes)."""

    model_config = _MODEL

    old: int = Field(ge=0)
    new: int = Field(ge=0)
    hashes: list[str]


class EntryItem(BaseModel):
    """One stored entry: its exact leaf, index, time logged, the entry itself, and
    (when asked for with ``proof_size``) its inclusion proof."""

    model_config = _MODEL

    leaf: str
    index: int = Field(ge=0)
    logged_at: str
    entry: Entry
    inclusion_proof: list[str] | None = None


class EntryPage(BaseModel):
    """A page of entries; ``next_start`` is where the next page starts, if any."""

    model_config = _MODEL

    entries: list[EntryItem]
    next_start: int | None


class AnomalyItem(BaseModel):
    """One finding for a reviewer."""

    model_config = _MODEL

    kind: Literal[
        "unlocks_over_limit",
        "outside_working_hours",
        "break_glass_unlock",
        "break_glass_unreviewed",
    ]
    professional_id: str | None
    indices: list[int]
    detail: str


class DailyUnlocksItem(BaseModel):
    """Unlocks one professional was granted on one local day."""

    model_config = _MODEL

    day: str
    professional_id: str
    unlocks: int = Field(ge=0)


class AnomalyReport(BaseModel):
    """The anomaly report: findings, and granted unlocks per day and professional."""

    model_config = _MODEL

    anomalies: list[AnomalyItem]
    unlocks_per_day: list[DailyUnlocksItem]
    timezone: str
    limit: int
    period: str


class Appended(BaseModel):
    """An appended entry: index and leaf, with its receipt once a checkpoint covers it."""

    model_config = _MODEL

    index: int = Field(ge=0)
    leaf: str
    receipt: str | None
    receipt_error: str | None = None
