"""Shared helpers for linkage-service tests: signed extracts, fake engines, tokens.

Extracts are built here record by record (random filters and tokens of the
right lengths, a sealed blob of the right length, a real Ed25519 signature)
so each corruption can be made precisely; ``test_ingest`` also pushes a real
agency-client extract.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from nacl.signing import SigningKey

from linkage_service import _store as store
from linkage_service._batch import RecordBatch
from protocols import (
    ExtractHeader,
    ExtractTrailer,
    clear_age,
    default_schema,
    sends_district,
    signed_message,
)

SCHEMA = default_schema()
FP = SCHEMA.fingerprint()
TOKENS = {
    "agency:school": "tok-school-0123456789",
    "agency:police": "tok-police-0123456789",
    "analyst": "tok-analyst-0123456789",
    "coordinator": "tok-coordinator-0123456789",
    "admin": "tok-admin-0123456789",
    "unlock_service": "tok-unlock-0123456789",
}
SEAL_LEN = 73 + SCHEMA.identity_pad_bytes


def auth(role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[role]}"}


def write_tokens(path: Path) -> Path:
    path.write_text(
        "".join(
            f"{hashlib.sha256(t.encode()).hexdigest()} {role} test\n" for role, t in TOKENS.items()
        )
    )
    path.chmod(0o600)
    return path


def key_id(pub: bytes) -> str:
    return hashlib.sha256(pub).digest()[:8].hex()


@dataclass
class Agency:
    agency_id: str
    key: SigningKey
    types: tuple[str, ...] = ("education",)

    @property
    def public(self) -> bytes:
        return bytes(self.key.verify_key)

    @property
    def key_id(self) -> str:
        return key_id(self.public)


def agency(agency_id: str, seed: int) -> Agency:
    return Agency(agency_id, SigningKey(bytes([seed]) * 32))


def register(engine: sa.Engine, a: Agency) -> None:
    store.add_agency(engine, a.agency_id, a.public, a.key_id, a.types)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def make_record(rng: random.Random, ref: str | None = None, **over: Any) -> dict[str, Any]:
    """A record dict with random content of the right shape."""
    rec: dict[str, Any] = {
        "record_ref": ref or rng.randbytes(16).hex(),
        "clk": _b64(rng.randbytes(SCHEMA.person_filter.output_bits // 8)),
        "address_clk": _b64(rng.randbytes(SCHEMA.address_filter.output_bits // 8)),
        "exact_tokens": {"nhs_number": _b64(rng.randbytes(24))},
        "blocking_keys": {SCHEMA.blocking_keys[0].name: _b64(rng.randbytes(12))},
        "age": rng.randint(0, 90),
        "sex": rng.choice(["M", "F"]),
        "postcode_district": "LS6",
        "indicators": [{"type": "attendance_pct", "value": 87.5, "date": "2026-07-31"}],
        "sealed_identity": _b64(b"\x01" + rng.randbytes(SEAL_LEN - 1)),
    }
    rec.update(over)
    # extract v2 sends whole years under 25 only, and a district only for a child
    # (or an expectant parent): a factory age of 25+ becomes its band
    if isinstance(rec["age"], int) and "age_band" not in over:
        rec["age"], band = clear_age(rec["age"])
        if band is not None:
            rec["age_band"] = band
    expectant = any(i["type"] == "expectant_parent" for i in rec["indicators"])
    if "postcode_district" not in over and not sends_district(rec["age"], expectant):
        del rec["postcode_district"]
    return rec


def record_line(rec: Mapping[str, Any]) -> bytes:
    import json

    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def build_extract(
    a: Agency,
    records: Sequence[Mapping[str, Any] | bytes],
    *,
    extract_id: str | None = None,
    created_at: dt.datetime | None = None,
    extract_type: str = "education",
    fingerprint: str = FP,
    sign_with: SigningKey | None = None,
    key_id_override: str | None = None,
) -> bytes:
    """A signed extract of ``records`` (dicts, or raw lines used verbatim)."""
    header = ExtractHeader(
        agency_id=a.agency_id,
        extract_id=extract_id or uuid.uuid4().hex,
        extract_type=extract_type,
        created_at=created_at or dt.datetime.now(dt.UTC).replace(microsecond=0),
        extract_date=dt.date(2026, 11, 1),
        schema_fingerprint=fingerprint,
        signing_key_id=key_id_override or a.key_id,
        seal_key_id="0" * 16,
    )
    lines = [r if isinstance(r, bytes) else record_line(r) for r in records]
    digest = hashlib.sha256(b"".join(lines)).hexdigest()
    sig = (sign_with or a.key).sign(signed_message(header, len(lines), digest)).signature
    trailer = ExtractTrailer(record_count=len(lines), records_sha256=digest, signature=_b64(sig))
    return (
        header.model_dump_json().encode()
        + b"\n"
        + b"".join(lines)
        + trailer.model_dump_json().encode()
        + b"\n"
    )


@dataclass
class FakeDelta:
    person_of: dict[int, str] = field(default_factory=dict)
    persons_retired: list[str] = field(default_factory=list)
    merges: list[tuple[str, str]] = field(default_factory=list)
    splits: list[tuple[str, str]] = field(default_factory=list)
    household_of: dict[str, str] = field(default_factory=dict)
    households_retired: list[str] = field(default_factory=list)
    household_merges: list[tuple[str, str]] = field(default_factory=list)
    household_splits: list[tuple[str, str]] = field(default_factory=list)
    persons_unheld: set[str] = field(default_factory=set)
    households_unheld: set[str] = field(default_factory=set)
    persons_made: set[str] = field(default_factory=set)
    households_made: set[str] = field(default_factory=set)
    links: list[tuple[int, int, float, dict[str, Any]]] = field(default_factory=list)
    review: list[tuple[int, int, float, dict[str, Any]]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


class FakeEngine:
    """Links records with byte-identical person filters into one person, one household each."""

    def __init__(self, batch: RecordBatch, person_of: dict[int, str], household_of: dict[str, str]):
        self.members: dict[str, set[int]] = {}
        self.key_of: dict[int, bytes] = {}
        self.person_by_key: dict[bytes, str] = {}
        self.person_of = dict(person_of)
        for k in range(len(batch)):
            rid = int(batch.ids[k])
            key = batch.clk[k].tobytes()
            self.key_of[rid] = key
            pid = person_of[rid]
            self.members.setdefault(pid, set()).add(rid)
            self.person_by_key[key] = pid
        self.updates = 0
        self.state_records = len(batch)

    def update(
        self,
        added: RecordBatch,
        removed: Sequence[int],
        previous: Mapping[int, str] | None = None,
        persons_ready: Callable[[FakeDelta], None] | None = None,
    ) -> FakeDelta:
        self.updates += 1
        self.previous = dict(previous or {})
        d = FakeDelta()
        for rid in removed:
            pid = self.person_of.pop(rid, None)
            self.key_of.pop(rid, None)
            if pid is not None:
                self.members[pid].discard(rid)
                if not self.members[pid]:
                    del self.members[pid]
                    d.persons_retired.append(pid)
                    d.households_retired.append("h-" + pid)
                    self.person_by_key = {k: v for k, v in self.person_by_key.items() if v != pid}
        for k in range(len(added)):
            rid = int(added.ids[k])
            key = added.clk[k].tobytes()
            pid = self.person_by_key.get(key)
            if pid is not None and pid in self.members:
                other = min(self.members[pid])
                d.links.append((other, rid, 1.0, {"dice": 1.0, "tokens_agreed": ["nhs_number"]}))
            else:
                pid = f"p{rid:06d}"
                self.person_by_key[key] = pid
                d.household_of[pid] = "h-" + pid
                d.persons_unheld.add(pid)
                d.households_unheld.add("h-" + pid)
                d.persons_made.add(pid)
                d.households_made.add("h-" + pid)
            self.members.setdefault(pid, set()).add(rid)
            self.person_of[rid] = pid
            self.key_of[rid] = key
            d.person_of[rid] = pid
        if persons_ready is not None:
            persons_ready(d)
        d.stats = {"added": float(len(added)), "removed": float(len(removed))}
        return d

    def record_persons(self, record_ids: Sequence[int]) -> dict[int, str]:
        return {r: self.person_of[r] for r in record_ids if r in self.person_of}


class FailingEngine(FakeEngine):
    """Raises inside ``update`` after changing its own state (like a real crash would)."""

    fail = True

    def update(
        self,
        added: RecordBatch,
        removed: Sequence[int],
        previous: Mapping[int, str] | None = None,
        persons_ready: Callable[[FakeDelta], None] | None = None,
    ) -> FakeDelta:
        delta = super().update(added, removed, previous, persons_ready)
        if FailingEngine.fail:
            raise RuntimeError("injected engine failure")
        return delta


class SlowEngine(FakeEngine):
    """Blocks in ``update`` until ``release`` is set (signals ``entered`` first)."""

    entered = threading.Event()
    release = threading.Event()

    def update(
        self,
        added: RecordBatch,
        removed: Sequence[int],
        previous: Mapping[int, str] | None = None,
        persons_ready: Callable[[FakeDelta], None] | None = None,
    ) -> FakeDelta:
        SlowEngine.entered.set()
        assert SlowEngine.release.wait(10)
        return super().update(added, removed, previous, persons_ready)
