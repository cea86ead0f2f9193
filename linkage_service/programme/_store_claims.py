"""Storage of payment by results: the claims, the people claimed for, the snapshots they read.

The SQL of ``_claims.py`` (and the claim reads of ``_assessment.py``): named
functions over the caller's connection, so a claim batch stays one transaction
(``_claims.create_claims`` opens it) and the primary keys of ``claimed_persons``
and the unique (family, kind) of ``claims`` are what refuse a double claim.

Must never: open a transaction of its own, or decide whether a claim is due.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import _store as mstore
from ._store import Claim, claimed_persons, claims, cycles, insert_rows, snapshots

__all__ = [
    "Claim",
    "ClaimedPerson",
    "NewClaim",
    "SnapRow",
    "add_claimed_persons",
    "add_claims",
    "claim_rows",
    "claimed_kinds",
    "claims_made_at",
    "snap_rows",
    "taken_people",
]


class SnapRow(NamedTuple):
    """A snapshot as the outcome rules read it: its cycle's date and ruleset, its detail JSON."""

    family_id: str
    cycle_id: int
    as_at: dt.date
    ruleset_sha256: str
    detail: str


def snap_rows(conn: Connection, family_ids: Sequence[str]) -> Iterator[SnapRow]:
    """Every snapshot of ``family_ids``, by family then date, oldest first."""
    s, c = snapshots, cycles
    for part in mstore.chunks(list(family_ids)):
        q = (
            sa.select(s.c.family_id, s.c.cycle_id, c.c.as_at, c.c.ruleset_sha256, s.c.detail)
            .join(c, c.c.id == s.c.cycle_id)
            .where(s.c.family_id.in_(part))
            .order_by(s.c.family_id, c.c.as_at, s.c.cycle_id)
        )
        for row in conn.execute(q):
            yield SnapRow._make(row)


class NewClaim(NamedTuple):
    """A claim to store; ``evidence`` is its JSON."""

    family_id: str
    kind: str
    result: str | None
    window_id: str
    cycle_id: int
    amount_gbp: int
    evidence: str
    created_at: int
    created_by: str


def add_claims(conn: Connection, rows: Sequence[NewClaim], batch: int = 1000) -> None:
    """Store claims; IntegrityError on a second claim of a kind for a family."""
    insert_rows(conn, claims, rows, batch)


def claim_rows(conn: Connection, window_id: str | None = None) -> list[Claim]:
    """Claims (of one window, or all), oldest first."""
    q = sa.select(claims).order_by(claims.c.id)
    if window_id is not None:
        q = q.where(claims.c.window_id == window_id)
    return [Claim._make(r) for r in conn.execute(q)]


def claimed_kinds(conn: Connection) -> set[tuple[str, str]]:
    """(family id, kind) of every claim made."""
    q = sa.select(claims.c.family_id, claims.c.kind)
    return {(str(a), str(b)) for a, b in conn.execute(q)}


def taken_people(conn: Connection, phase: str) -> set[tuple[str, str]]:
    """(kind, person id) of every person claimed for in ``phase``."""
    cp = claimed_persons
    q = sa.select(cp.c.kind, cp.c.person_id).where(cp.c.phase == phase)
    return {(str(k), str(p)) for k, p in conn.execute(q)}


def claims_made_at(conn: Connection, created_at: int) -> list[tuple[int, str, str]]:
    """(claim id, family id, kind) of the claims stored at ``created_at`` (one batch)."""
    c = claims
    q = sa.select(c.c.id, c.c.family_id, c.c.kind).where(c.c.created_at == created_at)
    return [(int(i), str(f), str(k)) for i, f, k in conn.execute(q)]


class ClaimedPerson(NamedTuple):
    """A person claimed for, for one kind, in a phase (by claim ``claim_id``)."""

    phase: str
    kind: str
    person_id: str
    claim_id: int


def add_claimed_persons(conn: Connection, rows: Sequence[ClaimedPerson], batch: int = 1000) -> None:
    """Record people as claimed for; IntegrityError if any already was, for that kind and phase."""
    insert_rows(conn, claimed_persons, rows, batch)
