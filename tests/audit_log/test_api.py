"""HTTP API in-process: authentication, roles, appends with receipts, proofs, review."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from audit_log._api import create_app
from audit_log._checkpoint import open_checkpoint, verify_tlog_proof
from audit_log._config import Settings
from audit_log._merkle import leaf_hash, verify_inclusion
from audit_log._note import NoteSigner

from ._factories import T0, hex_id, make_entry

ORIGIN = "audit.example.gov.uk/log"
TOKENS = {"writer": "w-token", "ig_officer": "ig-token", "reader": "r-token"}


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, bytes(range(32)))


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(tmp_path: Path, signer: NoteSigner) -> AsyncIterator[httpx.AsyncClient]:
    token_file = tmp_path / "tokens"
    token_file.write_text(
        "# hash role label\n"
        + "".join(
            f"{hashlib.sha256(t.encode()).hexdigest()} {role} test-{role}\n"
            for role, t in TOKENS.items()
        )
    )
    token_file.chmod(0o600)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'api.db'}",
        token_file=token_file,
        max_unlocks_per_period=2,
        checkpoint_interval=0.05,
    )
    app = create_app(settings, signer=signer)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://log") as test_client:
            yield test_client


async def _append(
    client: httpx.AsyncClient, entry_kind: str = "decision", n: int = 1, **kw: object
) -> dict:
    entry = make_entry(entry_kind, n, **kw).model_dump(mode="json")
    response = await client.post("/entries", json=entry, headers=auth("writer"))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/checkpoint"),
        ("GET", "/proof/inclusion?index=0&size=1"),
        ("GET", "/proof/consistency?old=0&new=0"),
        ("GET", "/receipts/0"),
        ("GET", "/leaves/0"),
        ("GET", "/entries"),
        ("GET", "/reports/anomalies"),
        ("POST", "/entries"),
        ("GET", "/openapi.json"),
    ],
)
async def test_unauthenticated_callers_are_refused(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert (await client.request(method, path)).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await client.request(method, path, headers=bad)).status_code == 401
    assert (
        await client.request(method, path, headers={"Authorization": "Basic x"})
    ).status_code == 401


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("reader", "GET", "/entries"),
        ("reader", "GET", "/reports/anomalies"),
        ("reader", "POST", "/entries"),
        ("ig_officer", "POST", "/entries"),
        ("writer", "GET", "/entries"),
        # Leaf bytes are entry contents: a witness or monitor sees only hashes.
        ("reader", "GET", "/leaves/0"),
    ],
)
async def test_wrong_roles_are_refused(
    client: httpx.AsyncClient, role: str, method: str, path: str
) -> None:
    body = make_entry().model_dump(mode="json") if method == "POST" else None
    response = await client.request(method, path, headers=auth(role), json=body)
    assert response.status_code == 403


async def test_the_api_schema_is_for_callers_only_and_there_is_no_docs_page(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/openapi.json", headers=auth("reader"))
    assert response.status_code == 200 and "/checkpoint" in response.json()["paths"]
    for page in ("/docs", "/redoc"):
        assert (await client.get(page, headers=auth("ig_officer"))).status_code == 404


async def test_the_json_answers_are_described_by_named_models(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json", headers=auth("reader"))).json()
    named = {
        ("get", "/entries"): "EntryPage",
        ("get", "/reports/anomalies"): "AnomalyReport",
        ("get", "/proof/inclusion"): "InclusionProof",
        ("get", "/proof/consistency"): "ConsistencyProof",
        ("post", "/entries"): "Appended",
    }
    for (method, path), model in named.items():
        answers = schema["paths"][path][method]["responses"]
        body = next(a for code, a in answers.items() if code.startswith("2"))
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith(f"/{model}"), (path, ref)
    entry = schema["components"]["schemas"]["EntryItem"]["properties"]["entry"]
    assert "oneOf" in entry or "discriminator" in entry or "anyOf" in entry  # every entry type


async def test_indexes_a_database_integer_cannot_hold_are_422(client: httpx.AsyncClient) -> None:
    too_big = 2**63
    for url in (
        f"/leaves/{too_big}",
        f"/receipts/{too_big}",
        f"/entries?start={too_big}",
        f"/entries?end={too_big}",
        f"/proof/inclusion?index={too_big}&size=1",
    ):
        response = await client.get(url, headers=auth("ig_officer"))
        assert response.status_code == 422, (url, response.text)


async def test_append_returns_a_receipt_that_verifies(
    client: httpx.AsyncClient, signer: NoteSigner
) -> None:
    first = await _append(client, n=1)
    second = await _append(client, "break_glass", n=2)
    assert (first["index"], second["index"]) == (0, 1)
    cp = verify_tlog_proof(second["receipt"], second["leaf"].encode(), signer.verifier())
    assert cp.size == 2
    receipt = await client.get("/receipts/0", headers=auth("reader"))
    assert receipt.status_code == 200
    verify_tlog_proof(receipt.text, first["leaf"].encode(), signer.verifier())
    leaf = await client.get("/leaves/1", headers=auth("ig_officer"))
    assert leaf.text == second["leaf"]


async def test_malformed_entries_are_refused(client: httpx.AsyncClient) -> None:
    bad = make_entry().model_dump(mode="json") | {"professional_id": "Jane Smith"}
    assert (await client.post("/entries", json=bad, headers=auth("writer"))).status_code == 422
    extra = make_entry().model_dump(mode="json") | {"address": "1 High St"}
    assert (await client.post("/entries", json=extra, headers=auth("writer"))).status_code == 422


async def test_checkpoint_and_proofs(client: httpx.AsyncClient, signer: NoteSigner) -> None:
    note0 = (await client.get("/checkpoint", headers=auth("reader"))).text
    cp0, _ = open_checkpoint(note0, signer.verifier())
    leaves = [(await _append(client, n=n))["leaf"] for n in range(5)]
    note = (await client.get("/checkpoint", headers=auth("reader"))).text
    cp, _ = open_checkpoint(note, signer.verifier())
    assert cp.size == 5
    proof = (await client.get("/proof/inclusion?index=3&size=5", headers=auth("reader"))).json()
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    verify_inclusion(leaf_hash(leaves[3].encode()), 3, 5, hashes, cp.root_hash)
    cons = (await client.get("/proof/consistency?old=2&new=5", headers=auth("ig_officer"))).json()
    assert cons["old"] == 2
    assert cp0.size == 0
    for bad in ("/proof/inclusion?index=9&size=5", "/proof/consistency?old=6&new=5"):
        response = await client.get(bad, headers=auth("reader"))
        assert response.status_code == 400
        assert "out of range" in response.json()["detail"] or "size" in response.json()["detail"]
    assert (await client.get("/receipts/99", headers=auth("reader"))).status_code == 400


async def test_review_queries_and_anomalies(client: httpx.AsyncClient) -> None:
    pro = hex_id("pro", 7)
    for n in range(4):
        await _append(client, n=n + 1, professional_id=pro, decision="granted")
    await _append(client, n=10, time=T0.replace(hour=23))  # outside working hours
    await _append(client, "break_glass", n=11, time=T0 - timedelta(days=30))
    response = await client.get(f"/entries?professional_id={pro}", headers=auth("ig_officer"))
    assert response.status_code == 200
    found = response.json()["entries"]
    assert [e["index"] for e in found] == [0, 1, 2, 3]
    assert found[0]["entry"]["professional_id"] == pro
    page = (await client.get("/entries?limit=2&start=1", headers=auth("ig_officer"))).json()
    assert [e["index"] for e in page["entries"]] == [1, 2]
    assert page["next_start"] == 3
    since = (
        await client.get(
            "/entries", params={"since": "2026-03-02T23:00:00Z"}, headers=auth("ig_officer")
        )
    ).json()
    assert [e["index"] for e in since["entries"]] == [4]
    report = (await client.get("/reports/anomalies", headers=auth("ig_officer"))).json()[
        "anomalies"
    ]
    kinds = sorted(a["kind"] for a in report)
    # the break-glass use here has no granted decision: unreviewed, not an unlock
    assert kinds == ["break_glass_unreviewed", "outside_working_hours", "unlocks_over_limit"]
    daily = (await client.get("/reports/anomalies", headers=auth("ig_officer"))).json()[
        "unlocks_per_day"
    ]
    assert {"day": "2026-03-02", "professional_id": pro, "unlocks": 4} in daily
    over = next(a for a in report if a["kind"] == "unlocks_over_limit")
    assert over["professional_id"] == pro
    assert over["indices"] == [0, 1, 2, 3]
    naive = await client.get("/entries?since=2026-03-02T23:00:00", headers=auth("ig_officer"))
    assert naive.status_code == 422


async def test_missing_token_file_fails_closed(tmp_path: Path, signer: NoteSigner) -> None:
    from audit_log._storage_errors import ConfigError

    settings = Settings(db_url=f"sqlite:///{tmp_path / 'x.db'}", token_file=tmp_path / "nope")
    app = create_app(settings, signer=signer)
    with pytest.raises(ConfigError, match="token file"):
        async with app.router.lifespan_context(app):
            pass


async def test_entries_with_proofs_verify_against_the_checkpoint(
    client: httpx.AsyncClient, signer: NoteSigner
) -> None:
    for n in range(6):
        await _append(client, n=n)
    note = (await client.get("/checkpoint", headers=auth("ig_officer"))).text
    cp, _ = open_checkpoint(note, signer.verifier())
    assert cp.size == 6
    pro = hex_id("pro", 1)
    await _append(client, n=7)  # beyond the checkpoint: not returned with proof_size=6
    body = (
        await client.get(
            "/entries",
            params={"professional_id": pro, "proof_size": 6},
            headers=auth("ig_officer"),
        )
    ).json()
    assert [e["index"] for e in body["entries"]] == [1, 4]
    for item in body["entries"]:
        hashes = [base64.b64decode(h) for h in item["inclusion_proof"]]
        verify_inclusion(leaf_hash(item["leaf"].encode()), item["index"], 6, hashes, cp.root_hash)
    ranged = (
        await client.get("/entries", params={"start": 2, "end": 4}, headers=auth("ig_officer"))
    ).json()
    assert [e["index"] for e in ranged["entries"]] == [2, 3]
    assert "inclusion_proof" not in ranged["entries"][0]
    too_big = await client.get("/entries?proof_size=99", headers=auth("ig_officer"))
    assert too_big.status_code == 400
    assert "proof_size 99" in too_big.json()["detail"]


def _tamper(path: Path, sql: str, *params: object) -> None:
    import sqlite3

    with sqlite3.connect(path) as raw:
        raw.execute("DROP TRIGGER IF EXISTS entries_no_update")
        raw.execute(sql, params)


async def test_a_row_changed_under_the_running_service_is_not_served(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    for n in range(3):
        await _append(client, n=n + 1, decision="granted")
    leaf = (await client.get("/leaves/1", headers=auth("ig_officer"))).text
    _tamper(
        tmp_path / "api.db",
        "UPDATE entries SET leaf_data = ? WHERE idx = 1",
        leaf.replace('"granted"', '"refused"').encode(),
    )
    for path in ("/leaves/1", "/entries", "/reports/anomalies"):
        response = await client.get(path, headers=auth("ig_officer"))
        assert response.status_code == 500, path
        assert "entry 1: stored leaf data no longer hashes" in response.json()["detail"]
    assert (await client.get("/leaves/0", headers=auth("ig_officer"))).status_code == 200


async def test_the_service_refuses_to_start_on_a_rewritten_decision_column(
    tmp_path: Path, signer: NoteSigner
) -> None:
    from audit_log._log import AuditLog
    from audit_log._storage_errors import TamperError

    path = tmp_path / "started.db"
    with AuditLog.open(str(path), signer) as log:
        log.append_many([make_entry("decision", n, decision="granted") for n in range(4)])
        log.checkpoint()
    _tamper(path, "UPDATE entries SET decision = 'refused' WHERE idx = 2")
    token_file = tmp_path / "tokens"
    token_file.write_text(f"{hashlib.sha256(b'x').hexdigest()} reader r\n")
    token_file.chmod(0o600)
    app = create_app(Settings(db_url=f"sqlite:///{path}", token_file=token_file), signer=signer)
    with pytest.raises(TamperError, match="entry 2: column decision .* refusing to start"):
        async with app.router.lifespan_context(app):
            pass
