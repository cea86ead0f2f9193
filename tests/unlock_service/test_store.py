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


def test_unsupported_database_urls_are_refused():
    with pytest.raises(ConfigError, match="unsupported"):
        store.create_engine("mysql://u:secret@h/db")
