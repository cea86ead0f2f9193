"""The programme over HTTP on a generated, linked population; accuracy against its truth."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey, VerifyKey

from agency_client._synthetic import PopulationConfig
from evaluation._harness import eligibility_agreement, ingest_population, load_population
from linkage_service import _store as store
from linkage_service._api import create_app
from linkage_service._config import Settings
from linkage_service.programme._assessment import run_cycle
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from protocols import (
    SignedAttestation,
    SubjectAccessAnswer,
    attestation_message,
    attestation_sha256,
    default_schema,
)

from ._factories import auth, write_tokens

pytestmark = pytest.mark.anyio
AS_AT = PopulationConfig(households=1).extract_date
SEED = bytes(range(1, 33))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    work = tmp_path_factory.mktemp("programme")
    pop = load_population(300, seed=11, workdir=work / "pop")
    sql = ingest_population(pop, f"sqlite:///{work / 'linkage.db'}")
    sql.dispose()
    return work, pop


@contextlib.asynccontextmanager
async def _serving(db: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the linkage service on the SQLite file ``db``."""
    key = tmp_path / "attestation.key"
    key.write_text(base64.b64encode(SEED).decode())
    key.chmod(0o600)
    settings = Settings(
        database_url=f"sqlite:///{db}",
        token_file=write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
        attestation_key_file=key,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://linkage") as c:
            yield c


@pytest.fixture
async def client(linked, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    work, _pop = linked
    db = tmp_path / "linkage.db"
    db.write_bytes((work / "linkage.db").read_bytes())
    async with _serving(db, tmp_path) as c:
        yield c


async def test_assess_review_attach_attest_and_release(client):
    r = await client.post("/assessments", json={"as_at": AS_AT.isoformat()}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    stats = r.json()
    assert stats["eligible"] > 0 and stats["attestations"] == stats["above_unlock"] > 0
    programme = (await client.get("/programme", headers=auth("analyst"))).json()
    assert programme["ruleset"]["sha256"] == stats["ruleset_sha256"]
    page = (await client.get("/families?eligible=true&limit=5", headers=auth("analyst"))).json()
    top = page["families"][0]
    assert top["rank"] == 1 and top["eligible"] and top["status"] == "identified"
    fid = top["family_id"]
    view = (await client.get(f"/families/{fid}", headers=auth("coordinator"))).json()
    assert sum(x["points"] for x in view["latest"]["reasons"]) == view["latest"]["score"]
    assert all("data_from" in p for p in view["latest"]["problems"].values())
    # analysts may read but not change a status; coordinators may
    body = {"status": "attached", "reason": "WORK_STARTED", "on": AS_AT.isoformat()}
    r = await client.post(f"/families/{fid}/status", json=body, headers=auth("analyst"))
    assert r.status_code == 403
    # an attachment date from before the family was identified is refused, naming the field
    early = {**body, "on": "1999-01-01"}
    r = await client.post(f"/families/{fid}/status", json=early, headers=auth("coordinator"))
    assert r.status_code == 422 and r.json()["field"] == "on", r.text
    assert "before the family was identified" in r.json()["detail"]
    r = await client.post(f"/families/{fid}/status", json=body, headers=auth("coordinator"))
    assert r.status_code == 200 and r.json()["baseline_cycle"] == stats["cycle_id"]
    r = await client.post(f"/families/{fid}/status", json=body, headers=auth("coordinator"))
    assert r.status_code == 409 and "already attached" in r.json()["detail"]
    r = await client.post(
        f"/families/{fid}/status", json={**body, "reason": "lower case"}, headers=auth("admin")
    )
    assert r.status_code == 422
    # the unlock service fetches and verifies the attestation, then the blobs it names
    r = await client.get(f"/families/{fid}/attestation", headers=auth("unlock_service"))
    assert r.status_code == 200, r.text
    signed = SignedAttestation.model_validate(r.json())
    key = VerifyKey(bytes(SigningKey(SEED).verify_key))
    key.verify(attestation_message(signed.attestation), base64.b64decode(signed.signature))
    sha = attestation_sha256(signed.attestation)
    r = await client.get(
        f"/families/{fid}/blobs", params={"attestation_sha256": sha}, headers=auth("unlock_service")
    )
    blobs = r.json()["blobs"]
    assert len(blobs) == len(signed.attestation.members)
    assert all(len(base64.b64decode(b["sealed_identity"])) > 100 for b in blobs)
    for role in ("analyst", "coordinator", "admin", "agency:school"):
        r = await client.get(
            f"/families/{fid}/blobs", params={"attestation_sha256": sha}, headers=auth(role)
        )
        assert r.status_code == 403
    r = await client.get(
        f"/families/{fid}/blobs",
        params={"attestation_sha256": "1" * 64},
        headers=auth("unlock_service"),
    )
    assert r.status_code == 409
    # a family below the threshold has no attestation
    low = (await client.get("/families?eligible=false&limit=1", headers=auth("analyst"))).json()
    lid = low["families"][-1]["family_id"]
    r = await client.get(f"/families/{lid}/attestation", headers=auth("unlock_service"))
    assert r.status_code == 409 and "below the unlock threshold" in r.json()["detail"]
    r = await client.get(f"/families/fam_{'0' * 16}/attestation", headers=auth("unlock_service"))
    assert r.status_code == 404
    # claims: attachment fee for the attached family
    r = await client.post("/claims", json={"window_id": "2026-H2"}, headers=auth("coordinator"))
    assert r.status_code == 200 and r.json()["attachment_claims"] == 1
    for window in ("2026-H3", "2019-H1"):
        r = await client.post("/claims", json={"window_id": window}, headers=auth("coordinator"))
        assert r.status_code == 409 and window in r.json()["detail"]
    r = await client.post("/claims", json={"window_id": "2026-X"}, headers=auth("coordinator"))
    assert r.status_code == 422
    claims = (await client.get("/claims", headers=auth("analyst"))).json()["claims"]
    assert [c["family_id"] for c in claims] == [fid]
    # reports name the cycle, ruleset and model they were computed from
    r = await client.get("/reports/status", headers=auth("coordinator"))
    assert r.status_code == 200, r.text
    assert r.json()["cycle"]["ruleset"]["sha256"] == stats["ruleset_sha256"]
    assert r.json()["totals"]["attached"] == 1
    r = await client.get(
        "/reports/work-list",
        params={"problem": "domestic_abuse", "format": "csv", "limit": 3},
        headers=auth("analyst"),
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(r.text.splitlines()) <= 4
    r = await client.get("/reports/nope", headers=auth("analyst"))
    assert r.status_code == 404
    r = await client.get("/reports/status", headers=auth("unlock_service"))
    assert r.status_code == 403
    # the returns: a lead professional, then each report as JSON and CSV with its parameters
    body = {"code": "team_north"}
    r = await client.post(f"/families/{fid}/lead-professional", json=body, headers=auth("analyst"))
    assert r.status_code == 403
    r = await client.post(
        f"/families/{fid}/lead-professional", json={"code": "Ms Smith"}, headers=auth("admin")
    )
    assert r.status_code == 422
    r = await client.post(
        f"/families/{fid}/lead-professional", json=body, headers=auth("coordinator")
    )
    assert r.status_code == 200 and r.json()["lead_professional"] == "team_north"
    r = await client.get(
        "/reports/breakdowns", params={"by": "lead_professional"}, headers=auth("analyst")
    )
    leads = {x["group"]: x for x in r.json()["rows"]}
    assert leads["team_north"]["attached"] == 1
    cohort = f"{AS_AT.year}-Q{(AS_AT.month - 1) // 3 + 1}"
    r = await client.get(
        "/reports/progress-data", params={"cohort": cohort}, headers=auth("analyst")
    )
    assert r.status_code == 200 and r.json()["families"] == 1 and len(r.json()["rows"]) == 13
    for name in ("distance-travelled", "report-card", "forecast", "cusp"):
        r = await client.get(f"/reports/{name}", params={"format": "csv"}, headers=auth("analyst"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), name
    r = await client.get(
        "/reports/cost-avoidance",
        params={"years": 2, "intervention_gbp": 5000},
        headers=auth("analyst"),
    )
    assert r.json()["parameters"]["years"] == 2 and r.json()["total_gbp"] == 0
    r = await client.get("/reports/status", params={"years": 2}, headers=auth("analyst"))
    assert r.status_code == 409 and "report status takes no years" in r.json()["detail"]
    r = await client.get("/reports/forecast", params={"cohort": "2026"}, headers=auth("analyst"))
    assert r.status_code == 422


async def test_restrictions_are_forwarded_and_stop_profiling_and_release(client):
    r = await client.post("/assessments", json={"as_at": AS_AT.isoformat()}, headers=auth("admin"))
    first = r.json()
    page = (await client.get("/families?eligible=true&limit=2", headers=auth("analyst"))).json()
    fid = page["families"][0]["family_id"]
    put = {"kind": "OPT_OUT"}
    for role in ("analyst", "coordinator", "admin"):
        r = await client.put(f"/restrictions/{fid}", json=put, headers=auth(role))
        assert r.status_code == 403, role
    r = await client.put(
        f"/restrictions/{fid}", json={"kind": "GAGGED"}, headers=auth("unlock_service")
    )
    assert r.status_code == 409 and "no rule" in r.json()["detail"]
    r = await client.put(f"/restrictions/{fid}", json=put, headers=auth("unlock_service"))
    assert r.status_code == 200 and r.json()["stops"] == ["profiling", "release"]
    listed = (await client.get("/restrictions", headers=auth("analyst"))).json()
    assert listed["rules"]["RESTRICTED"] == {"profiling": True, "claims": True, "release": True}
    assert [x["family_id"] for x in listed["restrictions"]] == [fid]
    r = await client.get(f"/families/{fid}/attestation", headers=auth("unlock_service"))
    assert r.status_code == 409 and "OPT_OUT" in r.json()["detail"]
    later = (AS_AT + dt.timedelta(days=1)).isoformat()
    stats = (await client.post("/assessments", json={"as_at": later}, headers=auth("admin"))).json()
    assert stats["restrictions"]["excluded_by_kind"] == {"OPT_OUT": 1}
    assert stats["families"] == first["families"] - 1
    r = await client.delete(f"/restrictions/{fid}", headers=auth("unlock_service"))
    assert r.status_code == 200 and r.json()["lifted"] == "OPT_OUT"
    r = await client.delete(f"/restrictions/{fid}", headers=auth("unlock_service"))
    assert r.status_code == 404


async def test_blobs_of_a_superseded_attestation_are_refused(client):
    unlock = auth("unlock_service")
    r = await client.post("/assessments", json={"as_at": AS_AT.isoformat()}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    page = (await client.get("/families?eligible=true&limit=1", headers=auth("analyst"))).json()
    fid = page["families"][0]["family_id"]
    old = (await client.get(f"/families/{fid}/attestation", headers=unlock)).json()
    old_sha = attestation_sha256(SignedAttestation.model_validate(old).attestation)
    later = (AS_AT + dt.timedelta(days=1)).isoformat()
    r = await client.post("/assessments", json={"as_at": later}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    r = await client.get(
        f"/families/{fid}/blobs", params={"attestation_sha256": old_sha}, headers=unlock
    )
    assert r.status_code == 409 and "superseded" in r.json()["detail"], r.text
    assert "blobs" not in r.json()
    new = (await client.get(f"/families/{fid}/attestation", headers=unlock)).json()
    new_sha = attestation_sha256(SignedAttestation.model_validate(new).attestation)
    r = await client.get(
        f"/families/{fid}/blobs", params={"attestation_sha256": new_sha}, headers=unlock
    )
    assert r.status_code == 200 and r.json()["blobs"], r.text


async def test_the_review_queue_of_a_linked_population(client):
    # real engine evidence: the summary's counts add up and the queue is in its order
    h = auth("coordinator")
    before = (await client.get("/review/summary", headers=h)).json()
    assert before["pairs"] > 0 and before["impact"]["not_assessed"] == before["pairs"]
    r = await client.post("/assessments", json={"as_at": AS_AT.isoformat()}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    counted = r.json()["review"]
    s = (await client.get("/review/summary", headers=h)).json()
    stats = (await client.get("/stats", headers=h)).json()
    assert s["pairs"] == stats["review_candidates"] and s["cycle_id"] == r.json()["cycle_id"]
    assert sum(s["impact"].values()) == s["pairs"] == sum(b["pairs"] for b in s["probability"])
    assert {k: counted[k] for k in s["impact"]} == s["impact"]
    assert (
        s["impactful"]
        == s["impact"]["eligibility"] + s["impact"]["threshold"] + s["impact"]["both"]
    )
    names = [c["comparison"] for c in s["comparisons"]]
    assert names[:2] == ["person", "address"] and "sex" in names
    for c in s["comparisons"]:
        assert sum(lv["pairs"] for lv in c["levels"]) == s["pairs"] - s["unexplained"]
    seen: list[tuple[int, float]] = []
    offset: int | None = 0
    while offset is not None:
        page = (await client.get(f"/review?offset={offset}&limit=50", headers=h)).json()
        seen += [
            (0 if c["impact"] not in ("none", None) else 1, c["uncertainty"])
            for c in page["candidates"]
        ]
        offset = page["next_offset"]
    assert len(seen) == s["pairs"] and seen == sorted(seen)
    only = (await client.get("/review?impactful_only=true&limit=1000", headers=h)).json()
    # (none at this size: the hand-built cases are in test_review.py)
    assert len(only["candidates"]) == s["impactful"]


async def test_subject_access_finds_the_persons_records_and_family(client, linked, tmp_path):
    await client.post("/assessments", json={"as_at": AS_AT.isoformat()}, headers=auth("admin"))
    db = tmp_path / "linkage.db"
    sql = store.open_engine(f"sqlite:///{db}")
    with sql.connect() as conn:
        # a health record of someone whose household is an assessed family (record
        # ids are random, so "the first record" would be anyone's)
        from linkage_service.programme import _store as pstore

        rec, rp, ph = store.records, store.record_person, store.person_household
        row = conn.execute(
            sa.select(rec.c.clk, rec.c.exact_tokens, rec.c.age)
            .join(rp, rp.c.record_id == rec.c.id)
            .join(ph, ph.c.person_id == rp.c.person_id)
            .join(pstore.snapshots, pstore.snapshots.c.household_id == ph.c.household_id)
            .where(rec.c.agency_id == "health", rec.c.active)
            .order_by(rec.c.record_ref)
            .limit(1)
        ).one()
    # the same identity encoded again gives the same filter and tokens
    query = {
        "schema_fingerprint": default_schema().fingerprint(),
        "clk": base64.b64encode(bytes(row.clk)).decode(),
        "exact_tokens": {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            for k, v in json.loads(row.exact_tokens).items()
        },
        "age": row.age,
    }
    r = await client.post("/subject-access", json=query, headers=auth("unlock_service"))
    assert r.status_code == 200, r.text
    answer = SubjectAccessAnswer.model_validate_json(r.content)
    held = answer.held
    best = held.persons[0]
    assert best.match == 1.0 and best.person_id is not None
    assert any(rec.agency_id == "health" and rec.age == row.age for rec in best.records)
    # every record of the subject's person comes with its indicators as ingested
    with sql.connect() as conn:
        stored = conn.execute(
            sa.select(sa.func.count())
            .select_from(store.indicators.join(store.records))
            .join(store.record_person, store.record_person.c.record_id == store.records.c.id)
            .where(store.record_person.c.person_id == best.person_id, store.records.c.active)
        ).scalar()
    sql.dispose()
    assert sum(len(rec.indicators) for rec in best.records) == stored
    # the family of the person's household, with its score and the reasons for it
    assert best.family_ids and {f.family_id for f in held.families} >= set(best.family_ids)
    family = next(f for f in held.families if f.family_id == best.family_ids[0])
    latest = family.assessments[-1]
    assert latest.subject_member and latest.cycle_id == 1
    assert latest.score == sum(reason.points for reason in latest.reasons)
    view = (await client.get(f"/families/{family.family_id}", headers=auth("admin"))).json()
    assert view["latest"]["score"] == latest.score
    # the sealed blobs of exactly the records held, and nothing else
    assert {(b.agency_id, b.record_ref) for b in answer.blobs} == held.record_keys()
    r = await client.post("/subject-access", json=query, headers=auth("analyst"))
    assert r.status_code == 403
    r = await client.post(
        "/subject-access",
        json={**query, "schema_fingerprint": "0" * 64},
        headers=auth("unlock_service"),
    )
    assert r.status_code == 400 and "schema" in r.json()["detail"]
    r = await client.post(
        "/subject-access", json={**query, "name": "x"}, headers=auth("unlock_service")
    )
    assert r.status_code == 422


async def test_subject_access_finds_records_the_agency_no_longer_sends(linked, tmp_path):
    """A retired record (its agency's latest extract left it out) is still held, so subject
    access returns it, found by its filter or by a keyed identifier, saying it is retired."""
    work, _pop = linked
    db = tmp_path / "linkage.db"
    db.write_bytes((work / "linkage.db").read_bytes())
    sql = store.open_engine(f"sqlite:///{db}")
    rec, rp = store.records, store.record_person
    with sql.begin() as conn:
        row = conn.execute(
            sa.select(rec.c.id, rec.c.clk, rec.c.exact_tokens, rec.c.extract_id, rp.c.person_id)
            .join(rp, rp.c.record_id == rec.c.id)
            .where(rec.c.agency_id == "police", rec.c.active, rec.c.exact_tokens != "{}")
            .order_by(rec.c.record_ref)
            .limit(1)
        ).one()
        # as an extract of the agency without it leaves it: inactive, kept, its person kept
        conn.execute(
            rec.update().where(rec.c.id == row.id).values(active=False, retired_by=row.extract_id)
        )
        # and a record of the health agency changed: its earlier version retired, the new
        # one live under the same ref (a new id, arrived last)
        old = conn.execute(
            sa.select(rec).where(rec.c.agency_id == "health", rec.c.active).limit(1)
        ).one()
        conn.execute(
            rec.update().where(rec.c.id == old.id).values(active=False, retired_by=old.extract_id)
        )
        top = conn.execute(sa.select(sa.func.max(rec.c.seq))).scalar_one()
        conn.execute(rec.insert().values({**old._mapping, "id": 2**40 + 1, "seq": top + 1}))
        pid = conn.execute(sa.select(rp.c.person_id).where(rp.c.record_id == old.id)).scalar_one()
        conn.execute(rp.insert().values(record_id=2**40 + 1, person_id=pid))
    sql.dispose()
    changed = {
        "schema_fingerprint": default_schema().fingerprint(),
        "clk": base64.b64encode(bytes(old.clk)).decode(),
        "exact_tokens": {},
    }
    tokens = json.loads(row.exact_tokens)
    by_filter = {
        "schema_fingerprint": default_schema().fingerprint(),
        "clk": base64.b64encode(bytes(row.clk)).decode(),
        "exact_tokens": {},
    }
    other = bytes(len(row.clk))  # a filter like no one's: found by the token alone
    by_token = {
        **by_filter,
        "clk": base64.b64encode(other).decode(),
        "exact_tokens": {k: base64.b64encode(bytes.fromhex(v)).decode() for k, v in tokens.items()},
    }
    async with _serving(db, tmp_path) as c:
        for query, match in ((by_filter, 1.0), (by_token, 0.0)):
            r = await c.post("/subject-access", json=query, headers=auth("unlock_service"))
            assert r.status_code == 200, r.text
            answer = SubjectAccessAnswer.model_validate_json(r.content)
            found = [
                (p, h)
                for p in answer.held.persons
                for h in p.records
                if h.agency_id == "police" and h.retired_by == row.extract_id
            ]
            assert len(found) == 1, query
            person, held = found[0]
            assert person.person_id == row.person_id and held.match == match
            assert ("police", held.record_ref) in {
                (b.agency_id, b.record_ref) for b in answer.blobs
            }
            # the live records of the person are there too, not marked retired
            assert all(h.retired_by is None for h in person.records if h is not held)
        # a changed record is listed once, as it is now (records are keyed by agency and ref)
        r = await c.post("/subject-access", json=changed, headers=auth("unlock_service"))
        assert r.status_code == 200, r.text
        answer = SubjectAccessAnswer.model_validate_json(r.content)
        versions = [
            h for p in answer.held.persons for h in p.records if h.record_ref == old.record_ref
        ]
        assert len(versions) == 1 and versions[0].retired_by is None
        assert len(answer.blobs) == len({(b.agency_id, b.record_ref) for b in answer.blobs})


@pytest.mark.slow
def test_eligibility_agrees_with_the_ground_truth_for_nearly_every_family(tmp_path):
    # Measured over secret seeds 1-6 (2,000 households, 1,190 true families): schema v1
    # agreed on 0.9899-0.9916, the folded v2 on 0.9891-0.9908, every disagreement an
    # eligible family missed; 0.99 was the edge for either, so the bar is 0.985.
    pop = load_population(2000, seed=20261121, workdir=tmp_path / "pop", secret_seed=1)
    sql = ingest_population(pop, f"sqlite:///{tmp_path / 'l.db'}")
    result = run_cycle(
        sql, default_ruleset(), default_model(), AS_AT, actor="test", now=dt.datetime.now(dt.UTC)
    )
    agreement = eligibility_agreement(pop, sql, result.cycle_id)
    sql.dispose()
    assert agreement["families"] > 1000
    assert agreement["rate"] >= 0.985, agreement["disagreements"][:10]


async def test_an_admin_switches_the_ruleset_without_a_restart(client):
    r = await client.post("/assessments", json={"as_at": AS_AT.isoformat()}, headers=auth("admin"))
    assert r.status_code == 200 and r.json()["ruleset"] == "troubled-families-phase2 1.0"
    body = {"ruleset": "supporting-families-2022", "reason": "NEW_PHASE"}
    r = await client.post("/programme/ruleset", json=body, headers=auth("coordinator"))
    assert r.status_code == 403
    r = await client.post(
        "/programme/ruleset", json={**body, "ruleset": "our-rules"}, headers=auth("admin")
    )
    assert r.status_code == 404 and "no shipped ruleset 'our-rules'" in r.json()["detail"]
    r = await client.post("/programme/ruleset", json=body, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["previous"]["name"] == "troubled-families-phase2"
    programme = (await client.get("/programme", headers=auth("analyst"))).json()
    assert programme["ruleset"]["name"] == "supporting-families-2022"
    assert programme["switches"][0]["switched_by"].startswith("admin:")
    r = await client.post("/programme/ruleset", json=body, headers=auth("admin"))
    assert r.status_code == 409 and "already the active ruleset" in r.json()["detail"]
    later = (AS_AT + dt.timedelta(days=1)).isoformat()
    r = await client.post("/assessments", json={"as_at": later}, headers=auth("admin"))
    stats = r.json()
    assert stats["ruleset"] == "supporting-families-2022 1.0"
    assert stats["step_up"] == 0  # the switch alone raises no step-up
    r = await client.get("/claims/export?format=json", headers=auth("analyst"))
    assert r.status_code == 200 and r.json() == {"claims": []}
    assert 'filename="claims-all.json"' in r.headers["content-disposition"]
