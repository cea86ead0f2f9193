"""Subject access end to end: the IG officer's journey with the CLIs, over the real services.

The stack and the journey of ``conftest.running_journey`` (three processes,
SQLite); the subject is a member of the family the journey released. As an
IG officer would: an agency encodes the subject's identity
(``agency-client subject-query``), the officer gets a token
(``unlock-service token issue``) and runs ``unlock-service subject-access``,
which writes the files to hand over.
"""

from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa

from agency_client import load_agency_key, record_ref
from linkage_service import _store as store
from linkage_service.programme import _store as pstore

from .conftest import World, run_cli, running_journey


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    with running_journey(tmp_path_factory.mktemp("e2e-sar") / "run") as w:
        yield w


def _subject(world: World) -> tuple[dict[str, str], str, set[tuple[str, str]]]:
    """A member of the released family: their true identity, household postcode, records."""
    stack, j = world.stack, world.journey
    sql = store.open_engine(stack.database_urls["linkage"], migrate_schema=False)
    try:
        with sql.connect() as conn:
            body = conn.execute(
                sa.select(pstore.attestations.c.body)
                .where(pstore.attestations.c.family_id == j.family_above)
                .order_by(pstore.attestations.c.cycle_id.desc())
            ).scalar()
    finally:
        sql.dispose()
    members = json.loads(body)["attestation"]["members"]
    agency, ref = members[0]["agency_id"], members[0]["record_ref"]
    truth = j.population.truth_dir
    key = load_agency_key(stack.key(f"agency-{agency}", "agency.key")).record_ref_key
    with (truth / "records.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    person_id = next(
        r["person_id"]
        for r in rows
        if r["agency"] == agency and record_ref(key, agency, r["system_id"]) == ref
    )
    with (truth / "persons.csv").open(newline="") as handle:
        person = next(p for p in csv.DictReader(handle) if p["person_id"] == person_id)
    with (truth / "households.csv").open(newline="") as handle:
        postcode = next(
            h["postcode"]
            for h in csv.DictReader(handle)
            if h["household_id"] == person["household_id"]
        )
    keys = {(r["agency"], r["system_id"]) for r in rows if r["person_id"] == person_id}
    return person, postcode, keys


def subject_access(
    stack, ig, person: dict[str, str], postcode: str, tmp_path
) -> tuple[dict, object]:
    """The IG officer's search for ``person`` with the CLIs: (subject-access.json, out dir)."""
    # 1. an agency holding the linkage secret encodes the subject's identity
    identity = tmp_path / "subject.toml"
    identity.write_text(
        f'given_names = "{person["given_name"]}"\n'
        f'family_name = "{person["family_name"]}"\n'
        f'date_of_birth = "{person["date_of_birth"]}"\n'
        f'sex = "{person["sex"]}"\n'
        f'postcode = "{postcode}"\n'
        + (f'nhs_number = "{person["nhs_number"]}"\n' if person["nhs_number"] else "")
    )
    query = tmp_path / "query.json"
    done = run_cli(
        "agency-client",
        "subject-query",
        "--identity",
        str(identity),
        "--secret",
        str(stack.key("agency-health", "linkage-secret.json")),
        "--out",
        str(query),
    )
    assert done.returncode == 0, done.stderr
    assert person["family_name"] not in query.read_text()
    # 2. the officer's token from the (local) issuer, written 0600
    token = tmp_path / "ig.token"
    config = str(stack.config_path("unlock-service"))
    done = run_cli(
        "unlock-service",
        "--config",
        config,
        "token",
        "issue",
        "--professional",
        ig.professional_id,
        "--out",
        str(token),
    )
    assert done.returncode == 0, done.stderr
    assert token.stat().st_mode & 0o777 == 0o600
    # 3. the search, over HTTP to the real unlock service and on to the linkage service
    out = tmp_path / "sar"
    done = run_cli(
        "unlock-service",
        "subject-access",
        "--url",
        stack.url("unlock-service"),
        "--key",
        str(ig.key_file),
        "--token-file",
        str(token),
        "--query",
        str(query),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "search logged as audit entry" in done.stdout
    assert out.stat().st_mode & 0o777 == 0o700
    files = sorted(p.name for p in out.iterdir())
    assert files == ["indicators.csv", "records.csv", "subject-access.json", "summary.txt"]
    assert all((out / name).stat().st_mode & 0o777 == 0o600 for name in files)
    return json.loads((out / "subject-access.json").read_text()), out


def test_the_ig_officer_gets_what_is_held_about_a_subject_as_files(world, tmp_path):
    stack, j = world.stack, world.journey
    person, postcode, true_records = _subject(world)
    ig = world.pros["ig-officer"]
    data, out = subject_access(stack, ig, person, postcode, tmp_path)
    best = data["persons"][0]
    # the subject's records, with the identities their agencies hold, opened by the officer
    found = {(r["agency_id"], r["identity"]["system_id"]) for r in best["records"]}
    assert found & true_records, "no record of the subject was found"
    theirs = [
        r for r in best["records"] if (r["agency_id"], r["identity"]["system_id"]) in true_records
    ]
    # (an agency's copy may carry a recording error: at least one holds the true date)
    assert any(r["identity"].get("date_of_birth") == person["date_of_birth"] for r in theirs)
    # with their pseudonymous data and indicators, as the linkage service holds them
    sql = store.open_engine(stack.database_urls["linkage"], migrate_schema=False)
    try:
        with sql.connect() as conn:
            for record in best["records"]:
                held = conn.execute(
                    sa.select(
                        store.records.c.id, store.records.c.age, store.records.c.district
                    ).where(
                        store.records.c.agency_id == record["agency_id"],
                        store.records.c.record_ref == record["record_ref"],
                        store.records.c.active,
                    )
                ).one()
                assert (record["age"], record["postcode_district"]) == (held.age, held.district)
                count = conn.execute(
                    sa.select(sa.func.count()).where(store.indicators.c.record_id == held.id)
                ).scalar()
                assert len(record["indicators"]) == count
    finally:
        sql.dispose()
    # the family, its scores with reasons, and the unlock the journey made
    assert j.family_above in best["family_ids"]
    family = next(f for f in data["families"] if f["family_id"] == j.family_above)
    latest = family["assessments"][-1]
    assert latest["subject_member"] and latest["score"] == j.family_above_score
    assert sum(r["points"] for r in latest["reasons"]) == latest["score"]
    released = j.released
    assert released is not None
    unlocks = {u["request_id"]: u for u in data["unlocks"]}
    assert unlocks[released.body["request_id"]]["status"] == "released"
    # the readable files say the same
    records = list(csv.DictReader((out / "records.csv").read_text().splitlines()))
    assert len(records) == sum(len(p["records"]) for p in data["persons"])
    assert any(r["family_name"] == person["family_name"] for r in records)
    summary = (out / "summary.txt").read_text()
    assert j.family_above in summary and released.body["request_id"] in summary
    # 4. the search itself is in the audit log, under the officer's id
    entries = run_cli(
        "audit-log",
        "entries",
        "--url",
        stack.url("unlock-service") + "/audit",
        "--vkey",
        str(stack.key("ig-office", "audit-log.vkey")),
        "--type",
        "ig_access",
        "--limit",
        "1000",
        env={"AUDIT_LOG_TOKEN": stack.secret("ig-office", "audit-token")},
    )
    assert entries.returncode == 0, entries.stderr
    logged = [json.loads(line) for line in entries.stdout.splitlines() if line.startswith("{")]
    search = [e for e in logged if e.get("index") == data["audit_index"]]
    assert search, entries.stdout[-500:]
    assert json.dumps(search[0]).count("SUBJECT_ACCESS") == 1
    assert ig.professional_id in json.dumps(search[0])


def test_no_one_but_an_ig_officer_may_run_a_subject_access_search(world, tmp_path):
    stack = world.stack
    worker = world.pros["social-worker"]
    token = tmp_path / "sw.token"
    assert (
        run_cli(
            "unlock-service",
            "--config",
            str(stack.config_path("unlock-service")),
            "token",
            "issue",
            "--professional",
            worker.professional_id,
            "--out",
            str(token),
        ).returncode
        == 0
    )
    query = tmp_path / "query.json"
    query.write_text(json.dumps({"schema_fingerprint": "0" * 64, "clk": "AAAA"}), encoding="utf-8")
    done = run_cli(
        "unlock-service",
        "subject-access",
        "--url",
        stack.url("unlock-service"),
        "--key",
        str(worker.key_file),
        "--token-file",
        str(token),
        "--query",
        str(query),
        "--out",
        str(tmp_path / "sar"),
    )
    assert done.returncode == 2 and "403" in done.stderr
    assert not (tmp_path / "sar").exists()
