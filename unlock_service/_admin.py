"""Administration: professionals' records and the sealing key, each change audited.

Every function here takes the acting administrator's professional id, checks
that they are an active professional whose role the policy marks ``admin``
(except for the very first registration into an empty database, which bootstraps
the first administrator), and appends a ``professional_change`` or
``key_rotation`` entry to the audit log inside the same database transaction
as the change: if the entry cannot be appended the change is rolled back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from audit_log import AuditLog, AuditLogError, KeyRotation, ProfessionalChange
from protocols import canonical_json

from . import _store as store
from ._errors import AuditUnavailable, ConfigError, Forbidden, NotFound
from ._policy import Policy
from ._release import rotate_seal_key
from ._service import micros, utcnow
from ._store import Professional

__all__ = [
    "SEAL_KEY_NAME",
    "add_professional",
    "new_professional_id",
    "record_sha256",
    "rotate_professional_key",
    "rotate_sealing_key",
    "set_active",
    "set_clearance",
]

SEAL_KEY_NAME = "unlock-service/seal"
_PRO = re.compile(r"^pro_[0-9a-f]{16,64}$")
_TEAM = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")


def new_professional_id() -> str:
    """A fresh pseudonymous professional id."""
    return "pro_" + secrets.token_hex(8)


def record_sha256(pro: Professional) -> str:
    """SHA-256 of a professional's canonical record (as logged in professional_change)."""
    return hashlib.sha256(canonical_json(pro.record())).hexdigest()


def _key_sha(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


def _check_admin(conn: Connection, policy: Policy, actor_id: str) -> None:
    actor = store.get_professional(conn, actor_id)
    if actor is None or not actor.active:
        raise Forbidden(f"{actor_id} is not an active professional")
    if not policy.role(actor.role).admin:
        raise Forbidden(f"{actor_id} (role {actor.role}) is not an administrator", "NOT_ADMIN")


def _append(audit: AuditLog, entry: ProfessionalChange | KeyRotation) -> int:
    try:
        return audit.append(entry).index
    except AuditLogError as exc:
        raise AuditUnavailable("the change could not be audited, so it was not made") from exc


def _change(
    audit: AuditLog, actor_id: str, pro: Professional, reason: str, now: dt.datetime, **keys: str
) -> int:
    return _append(
        audit,
        ProfessionalChange(
            time=now,
            actor_id=actor_id,
            professional_id=pro.professional_id,
            reason_code=reason,
            config_sha256=record_sha256(pro),
            config_version=str(pro.revision),
            **keys,
        ),
    )


def add_professional(
    engine: Engine,
    audit: AuditLog,
    policy: Policy,
    *,
    actor_id: str | None,
    role: str,
    team: str,
    clearance: int,
    public_key: bytes,
    professional_id: str | None = None,
    now: dt.datetime | None = None,
) -> Professional:
    """Register a professional; the first one in an empty database may register itself."""
    now = now or utcnow()
    pid = professional_id or new_professional_id()
    if not _PRO.match(pid):
        raise ConfigError(f"professional id {pid!r} must be 'pro_' and 16-64 lower-case hex")
    if role not in policy.rules.roles:
        raise ConfigError(
            f"role {role!r} is not in the policy (roles {sorted(policy.rules.roles)})"
        )
    if not _TEAM.match(team):
        raise ConfigError(f"team {team!r} must be a short lower-case code (letters, digits, -_)")
    if not 0 <= clearance <= 9:
        raise ConfigError(f"clearance {clearance} must be 0-9")
    if len(public_key) != 32:
        raise ConfigError("a professional's public key is 32 bytes of Ed25519 key")
    pro = Professional(pid, role, team, clearance, public_key, True, 1)
    with store.transaction(engine) as conn:
        if store.count_professionals(conn) == 0:
            if not policy.role(role).admin:
                raise Forbidden(
                    "the first professional registered must have an administrator role", "NOT_ADMIN"
                )
            actor_id = pid  # bootstrap: the first administrator registers itself
        elif actor_id is None:
            raise Forbidden("name the administrator making this change (--actor)")
        else:
            _check_admin(conn, policy, actor_id)
        store.insert_professional(conn, pro, micros(now))
        _change(audit, actor_id, pro, "REGISTERED", now, new_key_sha256=_key_sha(public_key))
    return pro


def _modify(
    engine: Engine,
    audit: AuditLog,
    policy: Policy,
    actor_id: str,
    professional_id: str,
    reason: str,
    now: dt.datetime | None,
    **changes: object,
) -> Professional:
    now = now or utcnow()
    with store.transaction(engine) as conn:
        _check_admin(conn, policy, actor_id)
        old = store.get_professional(conn, professional_id)
        if old is None:
            raise NotFound(f"no professional {professional_id}")
        values = {**old.__dict__, **changes, "revision": old.revision + 1}
        new = Professional(**values)
        store.update_professional(conn, new, micros(now))
        keys: dict[str, str] = {}
        if new.public_key != old.public_key:
            keys = {
                "old_key_sha256": _key_sha(old.public_key),
                "new_key_sha256": _key_sha(new.public_key),
            }
        _change(audit, actor_id, new, reason, now, **keys)
    return new


def rotate_professional_key(
    engine: Engine,
    audit: AuditLog,
    policy: Policy,
    *,
    actor_id: str,
    professional_id: str,
    public_key: bytes,
    now: dt.datetime | None = None,
) -> Professional:
    """Replace a professional's key (their old tokens stop working: the binding changes)."""
    if len(public_key) != 32:
        raise ConfigError("a professional's public key is 32 bytes of Ed25519 key")
    return _modify(
        engine, audit, policy, actor_id, professional_id, "KEY_ROTATED", now, public_key=public_key
    )


def set_clearance(
    engine: Engine,
    audit: AuditLog,
    policy: Policy,
    *,
    actor_id: str,
    professional_id: str,
    clearance: int,
    now: dt.datetime | None = None,
) -> Professional:
    """Set a professional's clearance level (0-9)."""
    if not 0 <= clearance <= 9:
        raise ConfigError(f"clearance {clearance} must be 0-9")
    return _modify(
        engine, audit, policy, actor_id, professional_id, "CLEARANCE_SET", now, clearance=clearance
    )


def set_active(
    engine: Engine,
    audit: AuditLog,
    policy: Policy,
    *,
    actor_id: str,
    professional_id: str,
    active: bool,
    now: dt.datetime | None = None,
) -> Professional:
    """Deactivate (or reactivate) a professional."""
    reason = "REACTIVATED" if active else "DEACTIVATED"
    return _modify(engine, audit, policy, actor_id, professional_id, reason, now, active=active)


def rotate_sealing_key(
    engine: Engine,
    audit: AuditLog,
    policy: Policy,
    *,
    actor_id: str,
    directory: Path,
    now: dt.datetime | None = None,
) -> str:
    """Make a new X25519 sealing key current (old keys kept); the new key id.

    The ``key_rotation`` entry records the SHA-256 of the old and new raw
    public keys (of the empty string when there was no key before).
    """
    now = now or utcnow()
    with store.transaction(engine) as conn:
        _check_admin(conn, policy, actor_id)

    def audit_first(old_pub: bytes | None, new_pub: bytes) -> None:
        _append(
            audit,
            KeyRotation(
                time=now,
                actor_id=actor_id,
                key_name=SEAL_KEY_NAME,
                old_key_sha256=_key_sha(old_pub or b""),
                new_key_sha256=_key_sha(new_pub),
            ),
        )

    _old, new, _old_pub, _new_pub = rotate_seal_key(directory, audit_first)
    return new
