"""Hand-built linked databases for programme tests: families, members, events.

A test describes households as plain data; :class:`TinyDb` writes the rows a
linked service database would hold (agency, extract, active records, persons,
households, indicators) so assessments run on exactly those facts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from linkage_service import _store as store

EXTRACT_TYPES = {
    "school": "education",
    "csc": "social_care",
    "early_help": "early_help",
    "police": "police_incidents",
    "dwp": "benefits",
    "housing": "housing",
    "health": "health",
}
AS_AT = dt.date(2026, 11, 1)


@dataclass
class Member:
    """One person: age at AS_AT, sex, the agencies holding a record, events."""

    age: int
    sex: str = "F"
    agencies: tuple[str, ...] = ("health",)
    # (agency, indicator type, value, date)
    events: list[tuple[str, str, float, dt.date]] = field(default_factory=list)
    district: str | None = "M15"  # on each of the person's records


class TinyDb:
    """A linkage database (SQLite unless given a URL) written row by row."""

    def __init__(self, path: Path | str) -> None:
        """A SQLite file at ``path``, or the (empty) database at the URL ``path``."""
        url = path if isinstance(path, str) else f"sqlite:///{path}"
        self.engine: Engine = store.open_engine(url)
        self._ids = itertools.count(1)
        self._ref = itertools.count(1)
        self.records: dict[tuple[str, str], int] = {}  # (person id, agency) -> record id
        with self.engine.begin() as conn:
            conn.execute(
                store.runs.insert().values(
                    id=1, kind="ingest", status="applied", started_at=0, stats="{}"
                )
            )
            for idx, (agency, extract_type) in enumerate(EXTRACT_TYPES.items(), start=1):
                conn.execute(
                    store.agencies.insert().values(
                        agency_id=agency,
                        idx=idx,
                        public_key=bytes(32),
                        key_id="0" * 16,
                        extract_types=f'["{extract_type}"]',
                        registered_at=0,
                    )
                )
                conn.execute(
                    store.extracts.insert().values(
                        extract_id=f"{idx:032x}",
                        agency_id=agency,
                        extract_type=extract_type,
                        created_at="2026-11-01T00:00:00+00:00",
                        extract_date=AS_AT,
                        schema_fingerprint="0" * 64,
                        record_count=0,
                        records_sha256="0" * 64,
                        body_sha256="0" * 64,
                        status="applied",
                        received_at=0,
                        run_id=1,
                        seal_key_id="ab" * 8,
                    )
                )

    def household(self, n: int, members: list[Member]) -> tuple[str, list[str]]:
        """Write a household; its id and its person ids."""
        hid = f"hh_{n:016x}"
        pids = []
        with self.engine.begin() as conn:
            conn.execute(store.households.insert().values(id=hid, created_run=1))
            for k, m in enumerate(members):
                pid = f"per_{n:012x}{k:04x}"
                pids.append(pid)
                conn.execute(store.persons.insert().values(id=pid, created_run=1))
                conn.execute(
                    store.person_household.insert().values(person_id=pid, household_id=hid)
                )
                for agency in sorted(set(m.agencies) | {e[0] for e in m.events}):
                    rid = self.add_record(conn, pid, agency, m.age, m.sex, m.district)
                    for ag, typ, value, date in m.events:
                        if ag == agency:
                            conn.execute(
                                store.indicators.insert().values(
                                    record_id=rid, type=typ, value=value, date=date
                                )
                            )
        return hid, pids

    def add_record(
        self,
        conn: sa.Connection,
        pid: str,
        agency: str,
        age: int,
        sex: str,
        district: str | None = "M15",
    ) -> int:
        rid = next(self._ids)
        idx = list(EXTRACT_TYPES).index(agency) + 1
        ref = f"{next(self._ref):032x}"
        conn.execute(
            store.records.insert().values(
                id=rid,
                seq=rid,
                agency_id=agency,
                record_ref=ref,
                extract_id=f"{idx:032x}",
                first_extract_id=f"{idx:032x}",
                active=True,
                content_sha256=hashlib.sha256(ref.encode()).digest(),
                clk=bytes(128),
                exact_tokens="{}",
                blocking_keys="{}",
                age=age,
                sex=sex,
                district=district,
                extract_date=AS_AT,
                sealed_identity=b"\x01" + bytes(16) + ref.encode(),
            )
        )
        conn.execute(store.record_person.insert().values(record_id=rid, person_id=pid))
        self.records[(pid, agency)] = rid
        return rid

    def add_event(self, pid: str, agency: str, typ: str, value: float, date: dt.date) -> None:
        """Report one more event on a person's record at ``agency``."""
        with self.engine.begin() as conn:
            conn.execute(
                store.indicators.insert().values(
                    record_id=self.records[(pid, agency)], type=typ, value=value, date=date
                )
            )

    def relink(self, old: str, new: str, pids: list[str], kind: str = "merge") -> None:
        """Re-linking moved ``pids`` from household ``old`` into ``new`` and retired ``old``."""
        h, ph = store.households, store.person_household
        with self.engine.begin() as conn:
            if conn.execute(sa.select(h.c.id).where(h.c.id == new)).first() is None:
                conn.execute(h.insert().values(id=new, created_run=1))
            for pid in pids:
                conn.execute(ph.update().where(ph.c.person_id == pid).values(household_id=new))
            conn.execute(h.update().where(h.c.id == old).values(retired_run=1))
            conn.execute(
                store.id_events.insert(),
                [
                    {"run_id": 1, "kind": "household_retired", "from_id": old, "to_id": None},
                    {"run_id": 1, "kind": f"household_{kind}", "from_id": old, "to_id": new},
                ],
            )

    def clear_events(self, pid: str, agency: str, typ: str) -> None:
        """Remove a person's events of one type at ``agency`` (a corrected record)."""
        i = store.indicators
        with self.engine.begin() as conn:
            conn.execute(
                i.delete().where(i.c.record_id == self.records[(pid, agency)], i.c.type == typ)
            )

    def review(self, record_a: int, record_b: int, score: float, **evidence: object) -> None:
        """Put the pair of records up for review with match probability ``score``."""
        lo, hi = sorted((record_a, record_b))
        with self.engine.begin() as conn:
            conn.execute(
                store.review.insert().values(
                    record_a=lo,
                    record_b=hi,
                    score=score,
                    uncertainty=store.review_uncertainty(score),
                    evidence=json.dumps({"probability": score, **evidence}),
                    run_id=1,
                )
            )
