"""The unlock service's own database: professionals, nonces, requests, approvals,
restriction flags and break-glass reviews.

SQLite (one file, WAL) by default and PostgreSQL by URL, through SQLAlchemy
Core; the tables are declared here and created by the alembic migrations in
``_migrations`` (a test checks the two agree). The audit log lives in its own
database, owned by :mod:`audit_log`.

What is stored: pseudonymous ids, roles, clearances, public keys, codes,
hashes, times, and the attestation JSON (pseudonymous ids and record refs
only). Never an identity: this module has no column an identity could go in,
and a test searches every table for the demo identities after releases. The
one free text, a pending request's justification (which approvers must
read), is stored only sealed to the service's own key and is cleared by the
transition that decides the request.
Times are integer microseconds since the Unix epoch.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from service_common import (
    create_database_engine,
    migrate_database,
    normalise_database_url,
    open_database,
    redact_url,
)

from ._errors import ConfigError, NotFound, StorageError

__all__ = [
    "VERSION_TABLE",
    "Professional",
    "RequestRow",
    "ReviewRow",
    "create_engine",
    "metadata",
    "migrate",
    "open_engine",
]

VERSION_TABLE = "unlock_service_alembic_version"

# Statuses after which nobody approves the request any more.
DECIDED = frozenset({"granted", "releasing", "released", "refused", "expired", "audit_failed"})

normalise_url = normalise_database_url
redact = redact_url

metadata = sa.MetaData()

professionals = sa.Table(
    "professionals",
    metadata,
    sa.Column("professional_id", sa.String(80), primary_key=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("team", sa.String(64), nullable=False),
    sa.Column("clearance", sa.SmallInteger, nullable=False),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("nonce", sa.String(32), primary_key=True),
    sa.Column("professional_id", sa.String(80), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
)
requests = sa.Table(
    "requests",
    metadata,
    sa.Column("request_id", sa.String(80), primary_key=True),
    sa.Column("professional_id", sa.String(80), nullable=False),
    sa.Column("family_id", sa.String(80), nullable=False, index=True),
    sa.Column("purpose_code", sa.String(32), nullable=False),
    sa.Column("justification_sha256", sa.String(64), nullable=False),
    sa.Column("attestation_sha256", sa.String(64), nullable=False),
    sa.Column("attestation_json", sa.Text),
    sa.Column("clearance_required", sa.SmallInteger),
    sa.Column("break_glass", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("reason_code", sa.String(32), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("decided_at", sa.BigInteger),
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("released_at", sa.BigInteger),
    sa.Column("request_index", sa.BigInteger),
    sa.Column("decision_index", sa.BigInteger),
    # The claim of the caller moving the request through a transitional state
    # (evaluating, deciding, releasing, expiring) and when it was taken: the
    # claim's owner finishes the transition; recovery takes over stale claims.
    sa.Column("claim", sa.String(32)),
    sa.Column("claimed_at", sa.BigInteger),
    # the justification of a request awaiting approval, sealed to the service's
    # own X25519 key ("<key id>:<base64>"); NULL once the request is decided
    sa.Column("sealed_justification", sa.Text),
    sa.Index("ix_requests_professional_created", "professional_id", "created_at"),
)
reconciliation = sa.Table(
    "reconciliation",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("audit_index", sa.BigInteger, nullable=False),
)
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("request_id", sa.String(80), primary_key=True),
    sa.Column("approver_id", sa.String(80), primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason_code", sa.String(32), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("audit_index", sa.BigInteger, nullable=False),
)
restrictions = sa.Table(
    "restrictions",
    metadata,
    sa.Column("family_id", sa.String(80), primary_key=True),
    sa.Column("flag", sa.String(32), nullable=False),
    sa.Column("actor_id", sa.String(80), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)
reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("request_id", sa.String(80), primary_key=True),
    sa.Column("professional_id", sa.String(80), nullable=False),
    sa.Column("family_id", sa.String(80), nullable=False),
    sa.Column("purpose_code", sa.String(32), nullable=False),
    sa.Column("opened_at", sa.BigInteger, nullable=False),
    sa.Column("due_at", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("outcome", sa.String(16)),
    sa.Column("reviewer_id", sa.String(80)),
    sa.Column("closed_at", sa.BigInteger),
    sa.Column("notes_sha256", sa.String(64)),
    sa.Column("audit_index", sa.BigInteger),
)


# --- engines and migrations -----------------------------------------------------------


def create_engine(url: str) -> Engine:
    """An engine for ``url`` (sqlite or postgresql), without migrating.

    SQLite: synchronous=NORMAL in WAL mode: a commit is atomic and consistent but
    is fsynced at the next WAL checkpoint, not at once. This database holds
    working state (requests, grants, nonces); the evidence is the audit log,
    which is fsynced (synchronous=FULL) before anything is released.
    """
    engine = create_database_engine(
        url,
        error=ConfigError,
        synchronous="NORMAL",
        pool_pre_ping=True,
        pool_size=20,
        max_overflow=40,
    )
    if engine.dialect.name == "sqlite":
        # SQLite has one writer at a time and its busy handler sleeps in
        # growing steps; queueing writers on a mutex instead keeps the tail short.
        _WRITE_LOCKS[engine] = threading.Lock()
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision with the packaged alembic scripts."""
    migrate_database(engine, "unlock_service:_migrations", "unlock database", StorageError)


def open_engine(url: str, *, migrate_schema: bool = True) -> Engine:
    """Create an engine for ``url`` and (by default) migrate its schema."""
    return open_database(create_engine, migrate, url, migrate_schema=migrate_schema)


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One read-write transaction; database failures become StorageError."""
    lock = _WRITE_LOCKS.get(engine)
    try:
        if lock is None:
            with engine.begin() as connection:
                yield connection
        else:
            with lock, engine.begin() as connection:
                yield connection
    except SQLAlchemyError as exc:
        raise StorageError(f"the unlock database failed: {type(exc).__name__}") from exc


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction (no write lock); failures become StorageError."""
    try:
        with engine.begin() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise StorageError(f"the unlock database failed: {type(exc).__name__}") from exc


# --- professionals -------------------------------------------------------------------


@dataclass(frozen=True)
class Professional:
    """A registered professional (pseudonymous id, role, team, clearance, public key)."""

    professional_id: str
    role: str
    team: str
    clearance: int
    public_key: bytes
    active: bool
    revision: int

    def record(self) -> dict[str, Any]:
        """The canonical record whose SHA-256 goes into ``professional_change`` entries."""
        from ._auth import jwk_thumbprint

        return {
            "professional_id": self.professional_id,
            "role": self.role,
            "team": self.team,
            "clearance": self.clearance,
            "key_thumbprint": jwk_thumbprint(self.public_key),
            "active": self.active,
            "revision": self.revision,
        }


def _professional(row: Any) -> Professional:
    return Professional(
        row.professional_id,
        row.role,
        row.team,
        int(row.clearance),
        bytes(row.public_key),
        bool(row.active),
        int(row.revision),
    )


def get_professional(conn: Connection, professional_id: str) -> Professional | None:
    """The professional with this id, or None."""
    row = conn.execute(
        sa.select(professionals).where(professionals.c.professional_id == professional_id)
    ).first()
    return None if row is None else _professional(row)


def list_professionals(engine: Engine) -> list[Professional]:
    """Every professional, by id."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(professionals).order_by(professionals.c.professional_id))
        return [_professional(r) for r in rows]


def count_professionals(conn: Connection) -> int:
    """How many professionals are registered."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(professionals)).scalar_one())


def insert_professional(conn: Connection, pro: Professional, now: int) -> None:
    """Register a professional; ConfigError if the id is taken."""
    try:
        conn.execute(
            professionals.insert().values(
                professional_id=pro.professional_id,
                role=pro.role,
                team=pro.team,
                clearance=pro.clearance,
                public_key=pro.public_key,
                active=pro.active,
                revision=pro.revision,
                created_at=now,
                updated_at=now,
            )
        )
    except IntegrityError as exc:
        raise ConfigError(f"professional {pro.professional_id} is already registered") from exc


def update_professional(conn: Connection, pro: Professional, now: int) -> None:
    """Store a changed professional record (the revision must have been bumped)."""
    result = conn.execute(
        professionals.update()
        .where(
            professionals.c.professional_id == pro.professional_id,
            professionals.c.revision == pro.revision - 1,
        )
        .values(
            role=pro.role,
            team=pro.team,
            clearance=pro.clearance,
            public_key=pro.public_key,
            active=pro.active,
            revision=pro.revision,
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        raise NotFound(f"professional {pro.professional_id} changed concurrently or is gone")


# --- nonces ----------------------------------------------------------------------------


def use_nonce(engine: Engine, nonce: str, professional_id: str, expires_at: int) -> bool:
    """Remember ``nonce``; False if it was seen before (a replayed request)."""
    try:
        with transaction(engine) as conn:
            conn.execute(
                nonces.insert(),
                {"nonce": nonce, "professional_id": professional_id, "expires_at": expires_at},
            )
    except StorageError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            return False
        raise
    return True


def purge_nonces(engine: Engine, now: int) -> int:
    """Forget nonces whose signature window has passed."""
    with transaction(engine) as conn:
        return int(conn.execute(nonces.delete().where(nonces.c.expires_at < now)).rowcount)


# --- requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRow:
    """One unlock request and where it stands."""

    request_id: str
    professional_id: str
    family_id: str
    purpose_code: str
    justification_sha256: str
    attestation_sha256: str
    attestation_json: str | None
    clearance_required: int | None
    break_glass: bool
    status: str
    reason_code: str
    created_at: int
    decided_at: int | None
    expires_at: int | None
    released_at: int | None
    request_index: int | None
    decision_index: int | None
    claim: str | None = None
    claimed_at: int | None = None
    sealed_justification: str | None = None


def _request(row: Any) -> RequestRow:
    return RequestRow(**{c.name: getattr(row, c.name) for c in requests.columns})


def count_recent_requests(conn: Connection, professional_id: str, since: int, before: int) -> int:
    """Requests by ``professional_id`` created in [since, before)."""
    query = (
        sa.select(sa.func.count())
        .select_from(requests)
        .where(
            requests.c.professional_id == professional_id,
            requests.c.created_at >= since,
            requests.c.created_at < before,
        )
    )
    return int(conn.execute(query).scalar_one())


def _check_columns(values: dict[str, Any], what: str) -> None:
    # Statements take their columns from the parameters, which SQLAlchemy does
    # not check against the table: a misspelt column must fail, not be dropped.
    unknown = sorted(set(values) - {c.name for c in requests.columns})
    if unknown or not values:
        raise TypeError(f"request {what}: unknown columns {unknown}" if unknown else "no values")


def insert_request(conn: Connection, **values: Any) -> None:
    """Record a new request (status ``evaluating``)."""
    _check_columns(values, "insert")
    conn.execute(requests.insert(), values)


def get_request(conn: Connection, request_id: str) -> RequestRow:
    """The request ``request_id``; NotFound if there is none."""
    row = conn.execute(sa.select(requests).where(requests.c.request_id == request_id)).first()
    if row is None:
        raise NotFound(f"no request {request_id}")
    return _request(row)


def update_request(
    conn: Connection,
    request_id: str,
    *,
    from_status: Sequence[str] | None = None,
    holder: str | None = None,
    **values: Any,
) -> bool:
    """Update a request, only if its status is one of ``from_status`` (and, given a
    ``holder``, only if that claim still holds it); whether it changed.

    This conditional UPDATE is the guard of every state transition: of callers
    racing from the same state, exactly one sees True.
    """
    if values.get("status") in DECIDED:
        # the justification is kept (sealed) only while approvers may need it
        values["sealed_justification"] = None
    _check_columns(values, "update")
    params = {**values, "b_request_id": request_id}
    if from_status is not None:
        params["b_from_status"] = list(from_status)
    if holder is not None:
        params["b_holder"] = holder
    query = _guarded_update(from_status is not None, holder is not None)
    return bool(conn.execute(query, params).rowcount == 1)


@functools.cache
def _guarded_update(by_status: bool, by_holder: bool) -> sa.Update:
    # Built once per shape, with bound parameters (the SET columns come from
    # the execute parameters): a request's transitions are the hot path, and
    # building the statement each time cost several times executing it.
    query = requests.update().where(requests.c.request_id == sa.bindparam("b_request_id"))
    if by_status:
        query = query.where(requests.c.status.in_(sa.bindparam("b_from_status", expanding=True)))
    if by_holder:
        query = query.where(requests.c.claim == sa.bindparam("b_holder"))
    return query


def take_over(conn: Connection, row: RequestRow, claim: str, now: int) -> bool:
    """Take a stale claim over (status unchanged); whether this caller got it."""
    query = requests.update().where(
        requests.c.request_id == row.request_id, requests.c.status == row.status
    )
    for column, value in ((requests.c.claim, row.claim), (requests.c.claimed_at, row.claimed_at)):
        query = query.where(column.is_(None) if value is None else column == value)
    return bool(conn.execute(query.values(claim=claim, claimed_at=now)).rowcount == 1)


def stale_claims(conn: Connection, claimed_before: int, limit: int = 1000) -> list[RequestRow]:
    """Requests in a transitional state whose claim was taken before ``claimed_before``."""
    rows = conn.execute(
        sa.select(requests)
        .where(
            requests.c.status.in_(["evaluating", "deciding", "releasing", "expiring"]),
            sa.or_(requests.c.claimed_at.is_(None), requests.c.claimed_at < claimed_before),
        )
        .order_by(requests.c.created_at)
        .limit(limit)
    )
    return [_request(r) for r in rows]


def lapsed(conn: Connection, now: int, limit: int = 1000) -> list[RequestRow]:
    """Pending requests and unredeemed grants whose time ran out at ``now``."""
    rows = conn.execute(
        sa.select(requests)
        .where(
            requests.c.status.in_(["pending", "granted"]),
            requests.c.expires_at.is_not(None),
            requests.c.expires_at <= now,
        )
        .order_by(requests.c.expires_at)
        .limit(limit)
    )
    return [_request(r) for r in rows]


def last_break_glass(conn: Connection, professional_id: str, since: int) -> tuple[int, int | None]:
    """(how many, latest time) of ``professional_id``'s granted break-glass since ``since``."""
    row = conn.execute(
        sa.select(sa.func.count(), sa.func.max(requests.c.created_at)).where(
            requests.c.professional_id == professional_id,
            requests.c.break_glass.is_(True),
            requests.c.reason_code == "GRANTED_BREAK_GLASS",
            requests.c.created_at >= since,
        )
    ).one()
    return int(row[0]), None if row[1] is None else int(row[1])


def reconciled_through(conn: Connection, name: str) -> int:
    """The audit index up to which ``name`` reconciliation has run (0 at first)."""
    value = conn.execute(
        sa.select(reconciliation.c.audit_index).where(reconciliation.c.name == name)
    ).scalar_one_or_none()
    return 0 if value is None else int(value)


def set_reconciled_through(conn: Connection, name: str, index: int) -> None:
    """Move the ``name`` reconciliation mark to ``index``."""
    done = conn.execute(
        reconciliation.update().where(reconciliation.c.name == name).values(audit_index=index)
    )
    if done.rowcount != 1:
        conn.execute(reconciliation.insert().values(name=name, audit_index=index))


def requests_where(engine: Engine, *conditions: Any, limit: int = 1000) -> list[RequestRow]:
    """Requests matching ``conditions``, newest first."""
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(requests)
            .where(*conditions)
            .order_by(requests.c.created_at.desc())
            .limit(limit)
        )
        return [_request(r) for r in rows]


def requests_page(
    engine: Engine, professional_id: str, limit: int, before: str | None = None
) -> list[RequestRow]:
    """``professional_id``'s requests, newest first, after request ``before`` (keyset
    paging on (created_at, request_id), stable while new requests arrive); NotFound if
    ``before`` is not one of theirs."""
    query = sa.select(requests).where(requests.c.professional_id == professional_id)
    with reading(engine) as conn:
        if before is not None:
            mark = conn.execute(
                sa.select(requests.c.created_at).where(
                    requests.c.request_id == before,
                    requests.c.professional_id == professional_id,
                )
            ).scalar_one_or_none()
            if mark is None:
                raise NotFound(f"no request {before} of {professional_id} to page on from")
            query = query.where(
                sa.or_(
                    requests.c.created_at < mark,
                    sa.and_(requests.c.created_at == mark, requests.c.request_id < before),
                )
            )
        rows = conn.execute(
            query.order_by(requests.c.created_at.desc(), requests.c.request_id.desc()).limit(limit)
        )
        return [_request(r) for r in rows]


def awaiting_approval(
    conn: Connection, approver_id: str, now: int, limit: int = 500
) -> list[tuple[RequestRow, int]]:
    """Pending, unexpired requests of others that ``approver_id`` has not answered, soonest
    to expire first, each with its number of approvals so far (the policy filters further)."""
    answered = sa.select(approvals.c.request_id).where(approvals.c.approver_id == approver_id)
    granted = (
        sa.select(sa.func.count())
        .select_from(approvals)
        .where(
            approvals.c.request_id == requests.c.request_id,
            approvals.c.decision == "granted",
        )
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(requests, granted.label("approvals_so_far"))
        .where(
            requests.c.status == "pending",
            requests.c.expires_at > now,
            requests.c.professional_id != approver_id,
            requests.c.request_id.not_in(answered),
        )
        .order_by(requests.c.expires_at, requests.c.request_id)
        .limit(limit)
    )
    return [(_request(r), int(r.approvals_so_far)) for r in rows]


# --- approvals -------------------------------------------------------------------------


def insert_approval(conn: Connection, **values: Any) -> None:
    """Record one approver's answer (one per approver per request)."""
    conn.execute(approvals.insert().values(**values))


def approvals_for(conn: Connection, request_id: str) -> list[tuple[str, str]]:
    """(approver id, decision) of every answer recorded for ``request_id``."""
    rows = conn.execute(
        sa.select(approvals.c.approver_id, approvals.c.decision).where(
            approvals.c.request_id == request_id
        )
    )
    return [(r.approver_id, r.decision) for r in rows]


# --- restriction flags -----------------------------------------------------------------


def restriction(conn: Connection, family_id: str) -> str | None:
    """The family's flag code, or None."""
    return conn.execute(
        sa.select(restrictions.c.flag).where(restrictions.c.family_id == family_id)
    ).scalar_one_or_none()


def set_restriction(conn: Connection, family_id: str, flag: str, actor_id: str, now: int) -> None:
    """Set (or replace) the family's flag."""
    conn.execute(restrictions.delete().where(restrictions.c.family_id == family_id))
    conn.execute(
        restrictions.insert().values(
            family_id=family_id, flag=flag, actor_id=actor_id, created_at=now
        )
    )


def clear_restriction(conn: Connection, family_id: str) -> bool:
    """Lift the family's flag; whether there was one."""
    return bool(
        conn.execute(restrictions.delete().where(restrictions.c.family_id == family_id)).rowcount
    )


def list_restrictions(engine: Engine) -> list[dict[str, Any]]:
    """Every flagged family."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(restrictions).order_by(restrictions.c.family_id))
        return [dict(r._mapping) for r in rows]


# --- reviews ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewRow:
    """A break-glass review task."""

    request_id: str
    professional_id: str
    family_id: str
    purpose_code: str
    opened_at: int
    due_at: int
    status: str
    outcome: str | None
    reviewer_id: str | None
    closed_at: int | None
    notes_sha256: str | None
    audit_index: int | None


def insert_review(conn: Connection, **values: Any) -> None:
    """Open a review task."""
    conn.execute(reviews.insert().values(status="open", **values))


def list_reviews(engine: Engine, status: str | None) -> list[ReviewRow]:
    """Review tasks (open ones first by due date)."""
    query = sa.select(reviews).order_by(reviews.c.due_at)
    if status is not None:
        query = query.where(reviews.c.status == status)
    with reading(engine) as conn:
        return [ReviewRow(**dict(r._mapping)) for r in conn.execute(query)]


def get_review(conn: Connection, request_id: str) -> ReviewRow:
    """The review task of ``request_id``; NotFound if there is none."""
    row = conn.execute(sa.select(reviews).where(reviews.c.request_id == request_id)).first()
    if row is None:
        raise NotFound(f"no break-glass review for request {request_id}")
    return ReviewRow(**dict(row._mapping))


def has_review(conn: Connection, request_id: str) -> bool:
    """Whether ``request_id`` has a review task."""
    found = conn.execute(
        sa.select(reviews.c.request_id).where(reviews.c.request_id == request_id)
    ).first()
    return found is not None


def claim_review(conn: Connection, request_id: str, reviewer_id: str, now: int) -> bool:
    """Move an open review to ``closing`` for ``reviewer_id`` (the claim is the
    reviewer and the time); whether this caller won it."""
    result = conn.execute(
        reviews.update()
        .where(reviews.c.request_id == request_id, reviews.c.status == "open")
        .values(status="closing", reviewer_id=reviewer_id, closed_at=now)
    )
    return bool(result.rowcount == 1)


def settle_review(
    conn: Connection, request_id: str, holder: str, claimed_at: int, **values: Any
) -> bool:
    """Finish the ``closing`` claim (reviewer, time) with ``values``; whether it still held."""
    result = conn.execute(
        reviews.update()
        .where(
            reviews.c.request_id == request_id,
            reviews.c.status == "closing",
            reviews.c.reviewer_id == holder,
            reviews.c.closed_at == claimed_at,
        )
        .values(**values)
    )
    return bool(result.rowcount == 1)


def stale_reviews(conn: Connection, claimed_before: int) -> list[ReviewRow]:
    """Reviews left ``closing`` by a caller that stopped before ``claimed_before``."""
    rows = conn.execute(
        sa.select(reviews).where(
            reviews.c.status == "closing", reviews.c.closed_at < claimed_before
        )
    )
    return [ReviewRow(**dict(r._mapping)) for r in rows]


def dump_json(value: Any) -> str:
    """Compact JSON text for a stored column."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
