"""The web service's own database: sign-in accounts, and the last audit-log
checkpoint the IG pages verified.

Typed rows (sqlmodel) for both tables; every query of this package is
here. The schema is created and upgraded by the alembic scripts in
``_migrations`` (forward only). Accounts hold no plaintext secret: the password
as an argon2id hash, the TOTP seed and the user's service credential sealed
under a key derived from the password (see ``_accounts``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, select

from service_common import create_database_engine, migrate_database, open_database

from ._errors import StorageError

__all__ = [
    "VERSION_TABLE",
    "Account",
    "SeenCheckpoint",
    "get_account",
    "get_seen_checkpoint",
    "insert_account",
    "list_accounts",
    "open_engine",
    "record_failure",
    "record_success",
    "save_seen_checkpoint",
    "session",
    "set_active",
    "set_secrets",
]

VERSION_TABLE = "web_alembic_version"
ROLES = ("coordinator", "professional", "ig_officer")


class Account(SQLModel, table=True):
    """One person who signs in to the web pages."""

    __tablename__ = "accounts"

    username: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=32)
    display_name: str = Field(max_length=120)
    password_hash: str = Field(max_length=255)
    # argon2id salt of the key that seals ``sealed``; the sealed JSON holds the
    # TOTP seed (if any) and the user's service credential (if any).
    seal_salt: bytes
    sealed: bytes
    totp_required: bool = False
    # The last TOTP time step accepted (a code is never accepted twice).
    totp_last_step: int = 0
    professional_id: str | None = Field(default=None, max_length=80)
    failed_sign_ins: int = 0
    locked_until: int = 0
    active: bool = True
    created_at: int
    version: int = 0


class SeenCheckpoint(SQLModel, table=True):
    """The newest audit-log checkpoint (per log origin) that the IG pages verified:
    the next one must be proven consistent with it. Only the signed note is kept;
    it is opened and checked again with the pinned key whenever it is used."""

    __tablename__ = "seen_checkpoints"

    origin: str = Field(primary_key=True, max_length=255)
    size: int
    note: str
    verified_at: int
    version: int = 0


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine for the web service's database, upgraded to the newest schema."""
    return open_database(
        lambda u: create_database_engine(u, error=StorageError),
        lambda e: migrate_database(
            e, "web_service:_migrations", "web service database", StorageError
        ),
        url,
        migrate_schema=migrate,
    )


@contextmanager
def session(engine: Engine) -> Iterator[Session]:
    """One transaction; StorageError if the database fails."""
    try:
        with Session(engine) as db, db.begin():
            yield db
    except SQLAlchemyError as exc:
        raise StorageError(f"the web service database failed: {type(exc).__name__}") from exc


def get_account(db: Session, username: str) -> Account | None:
    """The account named ``username``, if any."""
    return db.get(Account, username)


def list_accounts(db: Session) -> list[Account]:
    """Every account, by user name."""
    return list(db.exec(select(Account).order_by(Account.username)))


def insert_account(db: Session, account: Account) -> bool:
    """Add ``account``; False if the user name is taken (nothing written)."""
    if db.get(Account, account.username) is not None:
        return False
    db.add(account)
    try:
        db.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def _guarded(db: Session, account: Account, **values: object) -> bool:
    """Update ``account`` only if nobody changed it since it was read."""
    table = Account.__table__  # type: ignore[attr-defined]
    result = db.connection().execute(
        table.update()
        .where(table.c.username == account.username, table.c.version == account.version)
        .values(version=account.version + 1, **values)
    )
    return bool(result.rowcount == 1)


def record_failure(db: Session, account: Account, *, max_failures: int, lock_until: int) -> None:
    """Count a failed sign-in; lock the account at ``max_failures``."""
    failures = account.failed_sign_ins + 1
    _guarded(
        db,
        account,
        failed_sign_ins=0 if failures >= max_failures else failures,
        locked_until=lock_until if failures >= max_failures else account.locked_until,
    )


def record_success(db: Session, account: Account, totp_step: int | None) -> bool:
    """Reset the failure count and remember the TOTP step; False if another sign-in
    with the same code (or any change to the account) won the race."""
    values: dict[str, object] = {"failed_sign_ins": 0, "locked_until": 0}
    if totp_step is not None:
        values["totp_last_step"] = totp_step
    return _guarded(db, account, **values)


def set_active(db: Session, account: Account, active: bool) -> bool:
    """Enable or disable an account."""
    return _guarded(db, account, active=active)


def set_secrets(
    db: Session, account: Account, *, password_hash: str, seal_salt: bytes, sealed: bytes
) -> bool:
    """Replace the password and the sealed secrets (a reset by the administrator)."""
    return _guarded(
        db,
        account,
        password_hash=password_hash,
        seal_salt=seal_salt,
        sealed=sealed,
        failed_sign_ins=0,
        locked_until=0,
    )


def get_seen_checkpoint(db: Session, origin: str) -> SeenCheckpoint | None:
    """The last verified checkpoint of the log ``origin``, if any."""
    return db.get(SeenCheckpoint, origin)


def save_seen_checkpoint(
    db: Session,
    origin: str,
    *,
    size: int,
    note: str,
    verified_at: int,
    previous: SeenCheckpoint | None,
) -> bool:
    """Remember a newly verified checkpoint; False (nothing written) if another
    request stored one meanwhile or ``size`` is smaller than the stored size."""
    table = SeenCheckpoint.__table__  # type: ignore[attr-defined]
    conn = db.connection()
    if previous is None:
        try:
            with conn.begin_nested():
                conn.execute(
                    table.insert().values(
                        origin=origin, size=size, note=note, verified_at=verified_at, version=0
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True
    result = conn.execute(
        table.update()
        .where(
            table.c.origin == origin,
            table.c.version == previous.version,
            table.c.size <= size,
        )
        .values(size=size, note=note, verified_at=verified_at, version=previous.version + 1)
    )
    return bool(result.rowcount == 1)
