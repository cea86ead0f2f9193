"""Programme assessment at council scale: the families of 1,000,000 linked records.

Uses the same cached synthetic population as ``bench/linkage_scale.py`` (generated
and encoded by the agency client under bench/out/ on first use). The records of
every agency's extract are written to a linkage database (SQLite by default, or
``--database-url``) with persons and households taken from the generator's truth,
so this measures the programme engine alone, not linkage. Then, timed:

(1) a full assessment cycle: load every family's members and events, assess them
    (measures, indicators, problems, eligibility, score with reason codes), rank,
    snapshot every family, record statuses, sign attestations for every family
    above the unlock threshold;
(2) ten per cent of eligible families are attached; a second cycle 200 days later
    also evaluates every attached family's outcome plan (payment by results);
(3) a claim batch for the window.

    .venv/bin/python bench/programme_assessment.py                  # 1M records
    .venv/bin/python bench/programme_assessment.py --records 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path


def peak_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:16]


def build_database(pop, url: str) -> None:  # type: ignore[no-untyped-def]
    """Write the population's records, persons and households as a linked database."""
    import base64
    import tomllib

    import sqlalchemy as sa

    from linkage_service import _store as store

    sql = store.open_engine(url)
    with sql.begin() as conn:
        conn.execute(
            store.runs.insert().values(
                id=1, kind="ingest", status="applied", started_at=0, stats="{}"
            )
        )
    next_id = 1
    persons: set[str] = set()
    households: set[str] = set()
    for idx, agency in enumerate(pop.agencies, start=1):
        mapping = pop.workdir / "population" / f"{agency}.mapping.toml"
        extract_type = tomllib.loads(mapping.read_text())["agency"]["extract_type"]
        lines = pop.extract_paths[agency].read_bytes().splitlines()
        header = json.loads(lines[0])
        with sql.begin() as conn:
            conn.execute(
                store.agencies.insert().values(
                    agency_id=agency,
                    idx=idx,
                    public_key=bytes(32),
                    key_id=header["signing_key_id"],
                    extract_types=json.dumps([extract_type]),
                    registered_at=0,
                )
            )
            conn.execute(
                store.extracts.insert().values(
                    extract_id=header["extract_id"],
                    agency_id=agency,
                    extract_type=extract_type,
                    created_at=header["created_at"],
                    extract_date=dt.date.fromisoformat(header["extract_date"]),
                    schema_fingerprint=header["schema_fingerprint"],
                    record_count=len(lines) - 2,
                    records_sha256="0" * 64,
                    body_sha256="0" * 64,
                    status="applied",
                    received_at=0,
                    run_id=1,
                    seal_key_id=header["seal_key_id"],
                )
            )
            extract_date = dt.date.fromisoformat(header["extract_date"])
            recs, inds, rp = [], [], []
            for raw in lines[1:-1]:
                r = json.loads(raw)
                person, household = pop.truth_by_ref[(agency, r["record_ref"])]
                pid, hid = _id("per_", person), _id("hh_", household)
                if pid not in persons:
                    persons.add(pid)
                    conn.execute(store.persons.insert().values(id=pid, created_run=1))
                    conn.execute(
                        store.person_household.insert().values(person_id=pid, household_id=hid)
                    )
                if hid not in households:
                    households.add(hid)
                    conn.execute(store.households.insert().values(id=hid, created_run=1))
                recs.append(
                    {
                        "id": next_id,
                        "seq": next_id,
                        "agency_id": agency,
                        "record_ref": r["record_ref"],
                        "extract_id": header["extract_id"],
                        "first_extract_id": header["extract_id"],
                        "active": True,
                        "content_sha256": hashlib.sha256(raw).digest(),
                        "clk": base64.b64decode(r["clk"]),
                        "exact_tokens": "{}",
                        "blocking_keys": "{}",
                        "age": r.get("age"),
                        "age_band": r.get("age_band"),
                        "sex": r.get("sex"),
                        "district": r.get("postcode_district"),
                        "extract_date": extract_date,
                        "sealed_identity": base64.b64decode(r["sealed_identity"]),
                    }
                )
                rp.append({"record_id": next_id, "person_id": pid})
                for i in r.get("indicators", ()):
                    inds.append(
                        {
                            "record_id": next_id,
                            "type": i["type"],
                            "value": i["value"],
                            "date": dt.date.fromisoformat(i["date"]),
                        }
                    )
                next_id += 1
                if len(recs) >= 5000:
                    conn.execute(store.records.insert(), recs)
                    conn.execute(store.record_person.insert(), rp)
                    if inds:
                        conn.execute(store.indicators.insert(), inds)
                    recs, inds, rp = [], [], []
            if recs:
                conn.execute(store.records.insert(), recs)
                conn.execute(store.record_person.insert(), rp)
                if inds:
                    conn.execute(store.indicators.insert(), inds)
    with sql.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(store.indicators)).scalar()
    print(
        f"database: {next_id - 1:,} records, {len(persons):,} persons, "
        f"{len(households):,} households, {n:,} indicator events"
    )
    sql.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--cache", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--database-url", help="default: a fresh SQLite file under the cache")
    args = ap.parse_args()

    from nacl.signing import SigningKey

    from agency_client._synthetic import PopulationConfig
    from evaluation._harness import load_population, population_dir
    from linkage_service import _store as store
    from linkage_service.programme._assessment import list_families, run_cycle, set_status
    from linkage_service.programme._claims import create_claims
    from linkage_service.programme._riskmodel import default_model
    from linkage_service.programme._ruleset import default_ruleset

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    households = max(int(args.records / 5.19), 100)
    t0 = time.perf_counter()
    pop = load_population(
        households,
        args.seed,
        population_dir(args.cache, args.records, args.seed),
        workers=os.cpu_count() or 1,
    )
    print(f"population: {len(pop.batch):,} records ({time.perf_counter() - t0:.0f} s, cached)")
    del pop.batch  # not needed: the database is built from the extract files
    db = args.cache / f"assess-{args.records}.sqlite"
    url = args.database_url or f"sqlite:///{db}"
    if args.database_url is None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    build_database(pop, url)
    print(f"database built in {time.perf_counter() - t0:.0f} s (not part of the figures)")

    sql = store.open_engine(url)
    ruleset, model = default_ruleset(), default_model()
    signer = SigningKey.generate()
    as_at = PopulationConfig(households=1).extract_date
    t0 = time.perf_counter()
    first = run_cycle(sql, ruleset, model, as_at, actor="bench", signer=signer)
    t_first = time.perf_counter() - t0
    s = first.stats
    print(
        f"(1) assessment: {s.families:,} families, {s.eligible:,} eligible, "
        f"{s.above_unlock:,} above unlock, {s.attestations or 0:,} attestations signed "
        f"in {t_first:.1f} s"
    )
    print(f"    phases (s): {s.seconds}")
    eligible = list_families(sql, eligible=True, limit=1_000_000).families
    chosen = eligible[::10]
    t0 = time.perf_counter()
    for f in chosen:
        set_status(sql, f.family_id, "attached", actor="bench", reason="WORK_STARTED", on=as_at)
    t_attach = time.perf_counter() - t0
    later = as_at + dt.timedelta(days=200)
    t0 = time.perf_counter()
    second = run_cycle(sql, ruleset, model, later, actor="bench", signer=signer)
    t_second = time.perf_counter() - t0
    s2 = second.stats
    print(
        f"(2) {len(chosen):,} families attached ({t_attach:.1f} s); second assessment with "
        f"outcome plans: step up {s2.step_up:,}, step down {s2.step_down:,}, "
        f"pending claim {s2.pending_claim:,} in {t_second:.1f} s"
    )
    t0 = time.perf_counter()
    window = ruleset.calendar.window_of(later)
    assert window is not None
    batch = create_claims(sql, window.window_id, actor="bench")
    t_claims = time.perf_counter() - t0
    print(
        f"(3) claim batch: {batch.attachment_claims:,} attachment, "
        f"{batch.result_claims:,} results, GBP {batch.amount_gbp:,} in {t_claims:.1f} s"
    )
    total = t_first + t_claims
    print(
        f"full assessment (cycle + claims) for {args.records:,} records: {total:.1f} s "
        f"(target < 60 s); peak memory {peak_mb():,.0f} MB"
    )
    sql.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
