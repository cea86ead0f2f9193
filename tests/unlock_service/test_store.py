"""Storage on SQLite and PostgreSQL: migrations match the tables; the flow runs on both."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from unlock_service import _store as store
from unlock_service._errors import ConfigError


def test_migrations_create_exactly_the_declared_tables(db_urls):
    url, _ = db_urls
    engine = store.open_engine(url)
    try:
        with engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), store.metadata)
        diff = [
            d for d in diff if not (d[0] == "remove_table" and d[1].name == store.VERSION_TABLE)
        ]
        assert diff == []
        store.migrate(engine)  # idempotent
    finally:
        engine.dispose()


def test_the_whole_flow_runs_on_each_backend(make_env, db_urls):
    unlock_url, audit_url = db_urls
    env = make_env(db_url=unlock_url, audit_url=audit_url)
    pro, manager = env.add_pro(), env.add_pro("team_manager", 6)
    family = env.add_family()
    client = env.client(pro)
    assert client.unlock(family, "SAFEGUARDING", "child seen with injuries").status_code == 200
    pending = client.unlock(family, "CASE_ALLOCATION", "allocating a key worker now")
    request_id = pending.json()["request_id"]
    assert env.client(manager).approve(request_id).json()["status"] == "granted"
    assert client.release(request_id).status_code == 200
    assert client.release(request_id).json()["reason"] == "GRANT_USED"


def test_a_nonce_is_accepted_once(tmp_path):
    engine = store.open_engine(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        assert store.use_nonce(engine, "a" * 32, "pro_" + "1" * 16, 100)
        assert not store.use_nonce(engine, "a" * 32, "pro_" + "1" * 16, 100)
        assert store.purge_nonces(engine, 101) == 1
    finally:
        engine.dispose()


def _request_values(request_id: str) -> dict[str, object]:
    return {
        "request_id": request_id,
        "professional_id": "pro_" + "1" * 16,
        "family_id": "fam_" + "2" * 16,
        "purpose_code": "SAFEGUARDING",
        "justification_sha256": "0" * 64,
        "attestation_sha256": "1" * 64,
        "attestation_json": None,
        "clearance_required": 1,
        "break_glass": False,
        "status": "pending",
        "reason_code": "APPROVAL_REQUIRED",
        "created_at": 1,
        "sealed_justification": "k:sealed",
    }


def test_a_guarded_update_changes_only_the_expected_status_and_claim(tmp_path):
    # update_request's statement is built once per shape with bound parameters:
    # each guard still decides, and the columns set are exactly those given.
    engine = store.open_engine(f"sqlite:///{tmp_path / 'u.db'}")
    rid = "req_" + "3" * 32
    try:
        with store.transaction(engine) as conn:
            store.insert_request(conn, **_request_values(rid))
            assert not store.update_request(conn, rid, from_status=["granted"], status="x")
            assert store.update_request(
                conn, rid, from_status=["pending"], status="deciding", claim="c1", claimed_at=5
            )
            assert not store.update_request(
                conn, rid, from_status=["deciding"], holder="c2", status="granted"
            )
            assert not store.update_request(conn, "req_" + "4" * 32, status="granted")
            assert store.update_request(
                conn, rid, from_status=["pending", "deciding"], holder="c1", status="granted"
            )
            row = store.get_request(conn, rid)
        assert (row.status, row.claim, row.claimed_at) == ("granted", "c1", 5)
        assert row.reason_code == "APPROVAL_REQUIRED"
        assert row.sealed_justification is None  # decided: the sealed justification goes
        with store.transaction(engine) as conn:
            with pytest.raises(TypeError, match=r"unknown columns \['statsu'\]"):
                store.update_request(conn, rid, statsu="released")
            with pytest.raises(TypeError, match="no values"):
                store.update_request(conn, rid, from_status=["granted"])
            with pytest.raises(TypeError, match=r"unknown columns \['bogus'\]"):
                store.insert_request(conn, **_request_values("req_" + "5" * 32), bogus=1)
    finally:
        engine.dispose()


def test_unsupported_database_urls_are_refused():
    with pytest.raises(ConfigError, match="unsupported"):
        store.create_engine("mysql://u:secret@h/db")
