"""HTTP: every route authenticates and authorises; pushes, reads, limits, faults."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from linkage_service import _store as store
from linkage_service._api import create_app
from linkage_service._config import Settings

from ._factories import (
    FailingEngine,
    FakeEngine,
    SlowEngine,
    agency,
    auth,
    build_extract,
    make_record,
    register,
    write_tokens,
)

pytestmark = pytest.mark.anyio

READ_ROUTES = {
    "/persons",
    "/persons/{person_id}",
    "/households",
    "/households/{household_id}",
    "/records/{agency_id}/{record_ref}/links",
    "/review",
    "/review/summary",
    "/review/decisions",
    "/runs",
    "/runs/{run_id}",
    "/stats",
    "/programme",
    "/assessments",
    "/families",
    "/families/{family_id}",
    "/families/{family_id}/outcomes",
    "/claims",
    "/claims/export",
    "/reports/{name}",
    "/export/{kind}",
}
UNLOCK_ROUTES = {
    "/families/{family_id}/attestation",
    "/families/{family_id}/blobs",
    "/subject-access",
}
UPLOAD_ROUTES = {"/uploads", "/uploads/{upload_id}", "/uploads/{upload_id}/complete"}
ROLES = ("agency:school", "agency:police", "analyst", "coordinator", "admin", "unlock_service")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        token_file=write_tokens(tmp_path / "tokens"),
        staging_dir=tmp_path,
        **kw,
    )


async def _client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://linkage") as c:
            yield c


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = _settings(tmp_path, max_upload_bytes=200_000)
    sql = store.open_engine(settings.database_url)
    register(sql, agency("school", 1))
    police = agency("police", 2)
    police.types = ("police",)
    register(sql, police)
    sql.dispose()
    app = create_app(settings, engine_factory=FakeEngine)
    async for c in _client(app):
        yield app, c


def _concrete(path: str) -> str:
    return (
        path.replace("{person_id}", "p1")
        .replace("{household_id}", "h1")
        .replace("{agency_id}", "school")
        .replace("{record_ref}", "0" * 32)
        .replace("{run_id}", "1")
        .replace("{family_id}", "fam_" + "0" * 16)
        .replace("{name}", "needs")
        .replace("{kind}", "persons")
        .replace("{any_id}", "fam_" + "0" * 16)
        .replace("{record_a}", "1")
        .replace("{record_b}", "2")
        .replace("{upload_id}", "u" * 24)
    )


def _api_routes(routes) -> list[APIRoute]:
    # FastAPI >= 0.165 keeps an included router as one entry (its routes under
    # ``original_router``); older versions copy its routes into the app's list.
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        elif getattr(r, "original_router", None) is not None:
            out += _api_routes(r.original_router.routes)
    return out


def _routes(app) -> list[tuple[str, str]]:
    return sorted((m, r.path) for r in _api_routes(app.routes) for m in r.methods)


async def test_every_route_refuses_unauthenticated_callers(app_client):
    app, client = app_client
    routes = _routes(app)
    assert ("POST", "/extracts") in routes and ("GET", "/health") in routes
    for method, path in routes:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}):
            r = await client.request(method, _concrete(path), headers=headers, content=b"")
            assert r.status_code == 401, (method, path, headers, r.text)


async def test_every_route_checks_the_role(app_client):
    app, client = app_client
    routes = _routes(app)
    known = (
        READ_ROUTES
        | UNLOCK_ROUTES
        | {
            "/extracts",
            "/health",
            "/families/{family_id}/status",
            "/programme/ruleset",
            "/ids/{any_id}",
        }
    )
    known |= {"/restrictions", "/restrictions/{family_id}"}
    known |= {"/families/{family_id}/status", "/families/{family_id}/lead-professional"}
    known |= {"/openapi.json", "/review/{record_a}/{record_b}/decision"}
    known |= UPLOAD_ROUTES
    assert {p for _, p in routes} <= known, "a new route needs a role decision in this test"
    for method, path in routes:
        if path in ("/health", "/openapi.json"):
            allowed = set(ROLES)
        elif path == "/extracts" or path in UPLOAD_ROUTES:
            allowed = {"agency:school", "agency:police"}
        elif path in UNLOCK_ROUTES or path == "/restrictions/{family_id}":
            allowed = {"unlock_service"}
        elif path in ("/ids/{any_id}", "/restrictions"):  # the unlock service reads these too
            allowed = {"analyst", "coordinator", "admin", "unlock_service"}
        elif (method, path) in (("POST", "/assessments"), ("POST", "/programme/ruleset")):
            allowed = {"admin"}
        elif method == "POST":  # status changes, lead professionals, claims, decisions
            allowed = {"coordinator", "admin"}
        else:
            allowed = {"analyst", "coordinator", "admin"}
        for role in ROLES:
            r = await client.request(method, _concrete(path), headers=auth(role), content=b"")
            if role in allowed:
                assert r.status_code not in (401, 403), (method, path, role, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.text)


async def test_push_then_read_persons_households_links_runs(app_client):
    _, client = app_client
    rng = random.Random(7)
    school, police = agency("school", 1), agency("police", 2)
    a, b = make_record(rng), make_record(rng)
    r = await client.post(
        "/extracts", content=build_extract(school, [a, b]), headers=auth("agency:school")
    )
    assert r.status_code == 200, r.text
    assert r.json()["records_added"] == 2
    twin = make_record(rng, clk=a["clk"])
    r = await client.post(
        "/extracts",
        content=build_extract(police, [twin], extract_type="police"),
        headers=auth("agency:police"),
    )
    assert r.status_code == 200, r.text
    persons = (await client.get("/persons", headers=auth("analyst"))).json()["persons"]
    assert len(persons) == 2
    links = (
        await client.get(f"/records/police/{twin['record_ref']}/links", headers=auth("analyst"))
    ).json()
    assert links["links"][0]["score"] == 1.0
    person = (await client.get(f"/persons/{links['person_id']}", headers=auth("analyst"))).json()
    assert {x["agency_id"] for x in person["records"]} == {"school", "police"}
    assert all("sealed_identity" not in x for x in person["records"])
    assert person["records"][0]["indicators"][0]["type"] == "attendance_pct"
    hh = (await client.get(f"/households/{person['household_id']}", headers=auth("admin"))).json()
    assert hh["persons"][0]["person_id"] == person["person_id"]
    assert len((await client.get("/households", headers=auth("analyst"))).json()["households"]) == 2
    runs = (await client.get("/runs", headers=auth("analyst"))).json()["runs"]
    assert [x["status"] for x in runs] == ["applied", "applied"]
    one = (await client.get(f"/runs/{runs[0]['run_id']}", headers=auth("analyst"))).json()
    assert one["extract_id"] == runs[0]["extract_id"]
    stats = (await client.get("/stats", headers=auth("analyst"))).json()
    assert stats["active_records_by_agency"] == {"police": 1, "school": 2}
    assert (await client.get("/review", headers=auth("analyst"))).json()["candidates"] == []
    assert (await client.get("/persons/nobody", headers=auth("analyst"))).status_code == 404
    # no response ever carries a sealed blob
    for body in (persons, links, person, hh, runs, stats):
        assert a["sealed_identity"][:40] not in str(body)


async def test_push_errors_are_clear(app_client):
    _, client = app_client
    rng = random.Random(8)
    school = agency("school", 1)
    body = build_extract(school, [make_record(rng), make_record(rng, clk="@@@@")])
    r = await client.post("/extracts", content=body, headers=auth("agency:school"))
    assert r.status_code == 400
    assert r.json()["line"] == 3 and r.json()["field"] == "clk"
    other = build_extract(agency("police", 2), [make_record(rng)], extract_type="police")
    r = await client.post("/extracts", content=other, headers=auth("agency:school"))
    assert r.status_code == 403 and "agency 'police'" in r.json()["detail"]
    xid = "b" * 32
    ok = await client.post(
        "/extracts",
        content=build_extract(school, [make_record(rng)], extract_id=xid),
        headers=auth("agency:school"),
    )
    assert ok.status_code == 200
    r = await client.post(
        "/extracts",
        content=build_extract(school, [make_record(rng)], extract_id=xid),
        headers=auth("agency:school"),
    )
    assert r.status_code == 409


async def test_oversized_body_is_413(app_client):
    _, client = app_client
    rng = random.Random(9)
    body = build_extract(agency("school", 1), [make_record(rng) for _ in range(200)])
    assert len(body) > 200_000
    r = await client.post("/extracts", content=body, headers=auth("agency:school"))
    assert r.status_code == 413 and "limit of 200000 bytes" in r.json()["detail"]

    async def chunks():  # no content-length: the limit still holds while streaming
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = await client.post("/extracts", content=chunks(), headers=auth("agency:school"))
    assert r.status_code == 413


async def test_too_many_records_is_413_naming_the_limit_and_stores_nothing(tmp_path):
    settings = _settings(tmp_path, max_records_per_push=3)
    sql = store.open_engine(settings.database_url)
    school = agency("school", 1)
    register(sql, school)
    sql.dispose()
    app = create_app(settings, engine_factory=FakeEngine)
    rng = random.Random(11)
    async for client in _client(app):
        r = await client.post(
            "/extracts",
            content=build_extract(school, [make_record(rng) for _ in range(4)]),
            headers=auth("agency:school"),
        )
        assert r.status_code == 413, r.text
        body = r.json()
        assert "more than 3 records" in body["detail"] and "max_records_per_push" in body["detail"]
        assert body["line"] == 5  # the fourth record
        stats = (await client.get("/stats", headers=auth("analyst"))).json()
        assert stats["active_records"] == 0 and stats["runs"] == 0, stats
        r = await client.post(
            "/extracts",
            content=build_extract(school, [make_record(rng) for _ in range(3)]),
            headers=auth("agency:school"),
        )
        assert r.status_code == 200 and r.json()["records_added"] == 3, r.text


async def test_other_bodies_over_max_body_bytes_are_413(tmp_path):
    settings = _settings(tmp_path, max_body_bytes=2048)
    app = create_app(settings, engine_factory=FakeEngine)
    async for client in _client(app):
        body = {"window_id": "2026-H2", "family_ids": ["fam_" + "0" * 16] * 200}
        r = await client.post("/claims", json=body, headers=auth("coordinator"))
        assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"], r.text

        async def chunks():  # no content-length: counted as it arrives
            yield b'{"window_id": "2026-H2", "family_ids": ['
            for _ in range(200):
                yield b'"fam_0000000000000000",'
            yield b'"fam_0000000000000000"]}'

        r = await client.post("/claims", content=chunks(), headers=auth("coordinator"))
        assert r.status_code == 413, r.text
        # the push is not counted against it: it has its own caps
        school = agency("school", 1)
        sql = store.open_engine(settings.database_url)
        register(sql, school)
        sql.dispose()
        rng = random.Random(5)
        extract = build_extract(school, [make_record(rng) for _ in range(3)])
        assert len(extract) > 2048
        r = await client.post("/extracts", content=extract, headers=auth("agency:school"))
        assert r.status_code == 200, r.text


def test_push_caps_default_to_1_gib_and_500k_records(tmp_path):
    settings = _settings(tmp_path)
    assert settings.max_upload_bytes == 1024**3
    assert settings.max_records_per_push == 500_000


async def test_the_api_schema_needs_a_token_and_there_is_no_docs_page(app_client):
    _, client = app_client
    assert (await client.get("/openapi.json")).status_code == 401
    r = await client.get("/openapi.json", headers=auth("agency:school"))
    assert r.status_code == 200 and "/extracts" in r.json()["paths"]
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert (await client.get(page, headers=auth("admin"))).status_code == 404


async def test_ids_a_database_integer_cannot_hold_are_422(app_client):
    _, client = app_client
    for url in ("/runs/9223372036854775808", "/families?cycle_id=9223372036854775808"):
        r = await client.get(url, headers=auth("analyst"))
        assert r.status_code == 422 and "less than or equal" in r.text, (url, r.text)
    r = await client.get("/runs/9223372036854775807", headers=auth("analyst"))
    assert r.status_code == 404


async def test_engine_failure_leaves_previous_state_intact(tmp_path):
    settings = _settings(tmp_path)
    sql = store.open_engine(settings.database_url)
    school = agency("school", 1)
    register(sql, school)
    sql.dispose()
    FailingEngine.fail = False
    app = create_app(settings, engine_factory=FailingEngine)
    rng = random.Random(10)
    first = [make_record(rng) for _ in range(3)]
    async for client in _client(app):
        r = await client.post(
            "/extracts", content=build_extract(school, first), headers=auth("agency:school")
        )
        assert r.status_code == 200
        before = (await client.get("/stats", headers=auth("admin"))).json()
        FailingEngine.fail = True
        try:
            r = await client.post(
                "/extracts",
                content=build_extract(school, [first[0], make_record(rng)]),
                headers=auth("agency:school"),
            )
        finally:
            FailingEngine.fail = False
        assert r.status_code == 500
        assert "previous state is intact" in r.json()["detail"]
        after = (await client.get("/stats", headers=auth("admin"))).json()
        for key in ("active_records", "retired_records", "persons", "households", "links"):
            assert after[key] == before[key], key
        runs = (await client.get("/runs", headers=auth("admin"))).json()["runs"]
        assert runs[0]["status"] == "failed" and "injected engine failure" in runs[0]["error"]
        # the engine was rebuilt from the database: the next push works from the old state
        r = await client.post(
            "/extracts",
            content=build_extract(school, [first[0], make_record(rng)]),
            headers=auth("agency:school"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["records_retired"] == 2 and r.json()["records_kept"] == 1


async def test_health_answers_while_a_slow_ingest_runs(tmp_path):
    settings = _settings(tmp_path)
    sql = store.open_engine(settings.database_url)
    school = agency("school", 1)
    register(sql, school)
    sql.dispose()
    SlowEngine.entered.clear()
    SlowEngine.release.clear()
    app = create_app(settings, engine_factory=SlowEngine)
    rng = random.Random(11)
    async for client in _client(app):
        push = asyncio.create_task(
            client.post(
                "/extracts",
                content=build_extract(school, [make_record(rng) for _ in range(5)]),
                headers=auth("agency:school"),
            )
        )
        for _ in range(200):
            if SlowEngine.entered.is_set():
                break
            await asyncio.sleep(0.02)
        assert SlowEngine.entered.is_set()
        health = await client.get("/health", headers=auth("analyst"))
        assert health.status_code == 200 and health.json()["ingesting"] is True
        stats = await client.get("/stats", headers=auth("analyst"))
        assert stats.status_code == 200 and stats.json()["active_records"] == 0
        SlowEngine.release.set()
        r = await push
        assert r.status_code == 200 and r.json()["records_added"] == 5
        health = await client.get("/health", headers=auth("analyst"))
        assert health.json()["ingesting"] is False


async def test_missing_token_file_fails_closed(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", token_file=tmp_path / "none")
    app = create_app(settings, engine_factory=FakeEngine)
    from linkage_service._errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        async with app.router.lifespan_context(app):
            pass
    loose = write_tokens(tmp_path / "loose")
    loose.chmod(0o644)
    app = create_app(settings.model_copy(update={"token_file": loose}), engine_factory=FakeEngine)
    with pytest.raises(ConfigError, match="chmod 600"):
        async with app.router.lifespan_context(app):
            pass


async def test_review_queue_parameters_are_bounded_and_answers_typed(app_client):
    app, client = app_client
    h = auth("analyst")
    for query in (
        "offset=-1",
        f"offset={10**30}",
        "offset=10000001",
        "limit=0",
        "limit=1001",
        f"limit={10**30}",
        "impactful_only=maybe",
        "offset=one",
    ):
        r = await client.get(f"/review?{query}", headers=h)
        assert r.status_code == 422, query
    r = await client.get("/review?offset=10000000&limit=1000&impactful_only=true", headers=h)
    assert r.status_code == 200
    assert r.json() == {
        "cycle_id": None,
        "impactful_only": True,
        "candidates": [],
        "next_offset": None,
    }
    summary = (await client.get("/review/summary", headers=h)).json()
    assert summary["pairs"] == 0 and len(summary["probability"]) == 10
    paths = app.openapi()["paths"]
    for path, model in (("/review", "ReviewQueue"), ("/review/summary", "ReviewSummary")):
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}


async def test_families_offset_is_bounded(app_client):
    _app, client = app_client
    r = await client.post("/assessments", json={"as_at": "2026-11-01"}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert (await client.get("/families?offset=5", headers=auth("analyst"))).status_code == 200
    # too big for a 64-bit OFFSET: refused as a bad parameter, not a server error
    r = await client.get(f"/families?offset={10**30}", headers=auth("analyst"))
    assert r.status_code == 422


async def test_a_reviewer_decides_a_pair_once_and_changes_it_on_the_record(app_client):
    _, client = app_client
    rng = random.Random(11)
    a, b = make_record(rng), make_record(rng)
    r = await client.post(
        "/extracts",
        content=build_extract(agency("school", 1), [a, b]),
        headers=auth("agency:school"),
    )
    assert r.status_code == 200, r.text
    ra = await client.get(f"/records/school/{a['record_ref']}/links", headers=auth("analyst"))
    rb = await client.get(f"/records/school/{b['record_ref']}/links", headers=auth("analyst"))
    ida, idb = ra.json()["record_id"], rb.json()["record_id"]
    url = f"/review/{idb}/{ida}/decision"
    body = {"decision": "match", "reason": "SAME_PERSON"}
    for bad in (
        {"decision": "maybe", "reason": "SAME_PERSON"},
        {"decision": "match", "reason": "same person"},
        {"decision": "match"},
        {**body, "extra": 1},
    ):
        assert (await client.post(url, json=bad, headers=auth("coordinator"))).status_code == 422
    same = await client.post(f"/review/{ida}/{ida}/decision", json=body, headers=auth("admin"))
    assert same.status_code == 422 and "itself" in same.text
    gone = await client.post(f"/review/{ida}/999999/decision", json=body, headers=auth("admin"))
    assert gone.status_code == 404 and "999999" in gone.text
    r = await client.post(url, json=body, headers=auth("coordinator"))
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["decision"] == "match" and first["version"] == 1
    assert first["decided_by"].startswith("coordinator:") and first["a"]["record_id"] == min(
        ida, idb
    )
    again = await client.post(url, json={**body, "decision": "non_match"}, headers=auth("admin"))
    assert again.status_code == 409 and "change=true" in again.text
    change = {"decision": "non_match", "reason": "TWINS", "change": True}
    r = await client.post(url, json=change, headers=auth("admin"))
    assert r.status_code == 200 and r.json()["version"] == 2
    listed = (await client.get("/review/decisions", headers=auth("analyst"))).json()
    assert [(d["version"], d["current"], d["reason"]) for d in listed["decisions"]] == [
        (1, False, "SAME_PERSON"),
        (2, True, "TWINS"),
    ]
    current = await client.get("/review/decisions?current_only=true", headers=auth("analyst"))
    assert [d["version"] for d in current.json()["decisions"]] == [2]
    summary = (await client.get("/review/summary", headers=auth("analyst"))).json()
    assert summary["decisions"]["non_match"] == 1 and summary["decisions"]["changes"] == 1
    for query in ("after=-1", "limit=0", "record_id=0", "record_id=99999999999999999999"):
        r = await client.get(f"/review/decisions?{query}", headers=auth("analyst"))
        assert r.status_code == 422, query


async def test_the_service_checkpoints_sqlites_log_on_a_thread_of_its_own(app_client):
    # an apply's commit does not copy its pages into the database file on the
    # apply's thread (the agency's answer would wait for it): a background thread does
    app, _client = app_client
    sql = app.state.service.sql
    with sql.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    assert "wal-checkpoints" in {t.name for t in threading.enumerate()}


async def test_the_lifespan_sizes_the_verify_pool_and_stops_it(tmp_path):
    app = create_app(_settings(tmp_path, verify_workers=1), engine_factory=FakeEngine)
    async for _c in _client(app):
        pool = app.state.service.verify_pool
        assert pool is not None and pool.workers == 1 and not pool.closed
    assert pool.closed
    app = create_app(_settings(tmp_path, verify_workers=0), engine_factory=FakeEngine)
    async for _c in _client(app):
        assert app.state.service.verify_pool is None


async def test_lsh_bits_setting_reaches_the_engine(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from linkage_service._engine import EngineConfig

    for bits, want in ((None, EngineConfig().lsh_bits), (25, 25)):
        (tmp_path / str(bits)).mkdir()
        app = create_app(_settings(tmp_path / str(bits), lsh_bits=bits))
        async with app.router.lifespan_context(app):  # builds the engine from the store
            assert app.state.service._engine.config.lsh_bits == want
    with pytest.raises(ValidationError, match="lsh_bits"):
        Settings(token_file=tmp_path / "t", lsh_bits=8)
