"""Entry factories and database fixtures shared by the storage, log, API and CLI tests."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit_log._entries import (
    Approval,
    BreakGlass,
    ConfigChange,
    Decision,
    Entry,
    IgAccess,
    KeyRotation,
    ProfessionalChange,
    Restriction,
    Review,
    UnlockRequest,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, within working hours


def hex_id(prefix: str, n: int) -> str:
    """A pseudonymous id of the shape the entry models accept."""
    return f"{prefix}_{hashlib.sha256(f'{prefix}{n}'.encode()).hexdigest()[:16]}"


def sha(text: str) -> str:
    """SHA-256 hex of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


def make_entry(kind: str = "decision", n: int = 0, **overrides: Any) -> Entry:
    """One valid entry of ``kind``; ``n`` varies the ids, ``overrides`` replace fields."""
    base: dict[str, Any] = {
        "time": T0 + timedelta(minutes=n),
        "request_id": hex_id("req", n),
        "professional_id": hex_id("pro", n % 3),
        "family_id": hex_id("fam", n % 5),
    }
    if kind == "unlock_request":
        fields = base | {
            "purpose_code": "SAFEGUARDING",
            "attestation_sha256": sha(f"att{n}"),
            "justification_sha256": sha(f"why{n}"),
        }
        return UnlockRequest(**(fields | overrides))
    if kind == "decision":
        fields = base | {
            "purpose_code": "SAFEGUARDING",
            "decision": "granted" if n % 4 else "refused",
            "reason_code": "POLICY_OK" if n % 4 else "NO_ATTESTATION",
            "policy_sha256": sha("policy"),
            "policy_version": "1.2.0",
        }
        return Decision(**(fields | overrides))
    if kind == "approval":
        fields = base | {
            "approver_id": hex_id("pro", 100 + n),
            "decision": "granted",
            "reason_code": "APPROVED",
        }
        return Approval(**(fields | overrides))
    if kind == "break_glass":
        fields = base | {"purpose_code": "EMERGENCY", "justification_sha256": sha(f"bg{n}")}
        return BreakGlass(**(fields | overrides))
    if kind == "review":
        fields = {k: v for k, v in base.items() if k != "family_id"} | {
            "reviewer_id": hex_id("pro", 200),
            "outcome": "upheld",
            "notes_sha256": sha("ok"),
        }
        return Review(**(fields | overrides))
    if kind == "key_rotation":
        fields = {
            "time": base["time"],
            "actor_id": hex_id("pro", 300),
            "key_name": "audit.example.gov.uk/log",
            "old_key_sha256": sha("old"),
            "new_key_sha256": sha("new"),
        }
        return KeyRotation(**(fields | overrides))
    if kind == "config_change":
        fields = {
            "time": base["time"],
            "actor_id": hex_id("pro", 300),
            "config_sha256": sha("cfg"),
            "config_version": "3",
        }
        return ConfigChange(**(fields | overrides))
    if kind == "professional_change":
        fields = {
            "time": base["time"],
            "actor_id": hex_id("pro", 300),
            "professional_id": base["professional_id"],
            "reason_code": "CLEARANCE_SET",
            "config_sha256": sha(f"record{n}"),
            "config_version": str(n + 1),
            "new_key_sha256": sha(f"key{n}"),
        }
        return ProfessionalChange(**(fields | overrides))
    if kind == "restriction":
        fields = {
            "time": base["time"],
            "actor_id": hex_id("pro", 300),
            "family_id": base["family_id"],
            "reason_code": "OPT_OUT_ADDED",
            "notes_sha256": sha(f"note{n}"),
        }
        return Restriction(**(fields | overrides))
    if kind == "ig_access":
        fields = {
            "time": base["time"],
            "actor_id": hex_id("pro", 300),
            "reason_code": "UNLOCKS_LISTED",
            "professional_id": base["professional_id"],
        }
        return IgAccess(**(fields | overrides))
    raise ValueError(kind)


KINDS = (
    "unlock_request",
    "decision",
    "approval",
    "break_glass",
    "review",
    "key_rotation",
    "config_change",
)
# Added with the unlock service; kept out of KINDS so the seeded mixes other
# tests rely on stay the same.
NEW_KINDS = ("professional_change", "restriction", "ig_access")


def mixed_entries(count: int, seed: int = 1) -> list[Entry]:
    """``count`` entries of mixed kinds, reproducibly shuffled by ``seed``."""
    rng = random.Random(seed)
    return [make_entry(rng.choice(KINDS), n) for n in range(count)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Factory of fresh database URLs on each backend (SQLite file, PostgreSQL schema-less DB)."""
    created: list[str] = []
    counter = iter(range(1000))

    def make() -> str:
        n = next(counter)
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'log{n}.db'}"
        import psycopg

        base_url: str = request.getfixturevalue("postgres_url")
        name = f"{base_url.rsplit('/', 1)[1]}_{n}_{uuid.uuid4().hex[:8]}"
        admin_url = base_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return "postgresql+psycopg://" + base_url.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"

    yield make
    if created:
        import psycopg

        base_url = request.getfixturevalue("postgres_url")
        admin_url = base_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for name in created:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
