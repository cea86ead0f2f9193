"""Stored rows as the wire models the HTTP routes answer with.

The database keeps integer microseconds since the epoch; answers carry ISO
8601 UTC times and, next to every reason code, its plain-language sentence
(:func:`protocols.reason_text`). Nothing here reads or writes storage.
"""

from __future__ import annotations

import datetime as dt

from protocols import RequestView, ReviewView, reason_text

from ._store import RequestRow, ReviewRow

__all__ = ["at", "at_or_none", "request_view", "review_view"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def at(micros: int) -> dt.datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + dt.timedelta(microseconds=micros)


def at_or_none(micros: int | None) -> dt.datetime | None:
    """:func:`at`, passing None through."""
    return None if micros is None else at(micros)


def request_view(row: RequestRow) -> RequestView:
    """A request as professionals and IG officers see it."""
    return RequestView(
        request_id=row.request_id,
        professional_id=row.professional_id,
        family_id=row.family_id,
        purpose_code=row.purpose_code,
        status=row.status,
        reason=row.reason_code,
        reason_text=reason_text(row.reason_code),
        break_glass=row.break_glass,
        clearance_required=row.clearance_required,
        attestation_sha256=row.attestation_sha256,
        justification_sha256=row.justification_sha256,
        created_at=at(row.created_at),
        decided_at=at_or_none(row.decided_at),
        expires_at=at_or_none(row.expires_at),
        released_at=at_or_none(row.released_at),
        request_index=row.request_index,
        decision_index=row.decision_index,
    )


def review_view(row: ReviewRow) -> ReviewView:
    """A break-glass review task."""
    return ReviewView(
        request_id=row.request_id,
        professional_id=row.professional_id,
        family_id=row.family_id,
        purpose_code=row.purpose_code,
        status=row.status,
        outcome=row.outcome,
        reviewer_id=row.reviewer_id,
        notes_sha256=row.notes_sha256,
        audit_index=row.audit_index,
        opened_at=at(row.opened_at),
        due_at=at(row.due_at),
        closed_at=at_or_none(row.closed_at),
    )
