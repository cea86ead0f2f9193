"""Shared database helpers: URLs, hidden passwords, backends, SQLite pragmas, upgrades."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from service_common import (
    BackgroundCheckpoints,
    create_database_engine,
    migrate_database,
    normalise_database_url,
    open_database,
    redact_url,
)


class Oops(Exception):
    pass


def test_urls_are_normalised_and_passwords_hidden():
    assert normalise_database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_database_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_database_url("/tmp/x.db") == "sqlite:////tmp/x.db"
    assert "s3cret" not in redact_url("postgresql://u:s3cret@h/d")
    assert redact_url("postgresql://u:s3cret@h/d").startswith("postgresql+psycopg://u:***@h")
    assert "s3cret" not in redact_url("postgresql://u@h/d?password=s3cret&sslmode=require")
    assert "sslmode=require" in redact_url("postgresql://u@h/d?password=s3cret&sslmode=require")


def test_other_backends_and_bad_urls_raise_the_callers_error():
    with pytest.raises(Oops, match="unsupported database 'mysql'.*expected sqlite or postgresql"):
        create_database_engine("mysql://u:pw@h/d", error=Oops)
    with pytest.raises(Oops) as err:
        create_database_engine("mysql://u:pw@h/d", error=Oops)
    assert "pw" not in str(err.value)


@pytest.mark.parametrize(("level", "code"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_connections_get_wal_and_the_durability_asked_for(tmp_path, level, code):
    engine = create_database_engine(
        str(tmp_path / "x.db"), error=Oops, synchronous=level, foreign_keys=True, pool_size=5
    )
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == code
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_a_failed_upgrade_disposes_the_engine_and_raises(tmp_path):
    made: list[sa.Engine] = []

    def create(url: str) -> sa.Engine:
        made.append(create_database_engine(url, error=Oops))
        return made[-1]

    def upgrade(engine: sa.Engine) -> None:
        migrate_database(engine, "no_such_package:_migrations", "test database", Oops)

    with pytest.raises(ModuleNotFoundError):
        open_database(create, upgrade, str(tmp_path / "y.db"))
    assert len(made) == 1
    engine = open_database(create, upgrade, str(tmp_path / "z.db"), migrate_schema=False)
    assert engine.dialect.name == "sqlite"


_ENV = """
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
"""

_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = {rev!r}
down_revision = {down!r}


def upgrade():
    op.create_table({table!r}, sa.Column("id", sa.Integer, primary_key=True))
    op.execute("INSERT INTO {table} (id) VALUES (1)")
    {fail}
"""


def _scripts(root, *, second_fails: bool):
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(_ENV)
    (root / "versions" / "r1.py").write_text(
        _REVISION.format(rev="r1", down=None, table="first", fail="")
    )
    fail = 'raise RuntimeError("the second revision fails")' if second_fails else ""
    (root / "versions" / "r2.py").write_text(
        _REVISION.format(rev="r2", down="r1", table="second", fail=fail)
    )
    return str(root)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "m.db")
    else:
        yield request.getfixturevalue("postgres_url")


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_an_upgrade_that_fails_part_way_leaves_the_schema_as_it_was(any_database, tmp_path):
    """DDL and data of every revision of one upgrade commit together or not at all
    (SQLite included, whose driver would otherwise run DDL outside a transaction)."""
    engine = create_database_engine(any_database, error=Oops)
    try:
        with engine.begin() as conn:
            for table in ("second", "first", "alembic_version"):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        failing = _scripts(tmp_path / "failing", second_fails=True)
        with pytest.raises(RuntimeError, match="second revision fails"):
            migrate_database(engine, failing, "test database", Oops)
        assert not _tables(engine) & {"first", "second", "alembic_version"}
        migrate_database(engine, _scripts(tmp_path / "good", second_fails=False), "db", Oops)
        assert {"first", "second", "alembic_version"} <= _tables(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "r2"
    finally:
        engine.dispose()


# --- WAL checkpoints off the committing thread ------------------------------------------

_ROWS, _BLOB = 800, 4096  # about 3.2 MB: some 800 pages, past an autocheckpoint of 500


def _big_commit(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (b BLOB)")
        conn.exec_driver_sql(
            "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?) "
            "INSERT INTO t SELECT randomblob(?) FROM n",
            (_ROWS, _BLOB),
        )


class _Gated(BackgroundCheckpoints):
    """Checkpoints that wait for the test's word (or fail, when told to)."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.gate = threading.Event()
        self.fail_next = False

    def _checkpoint(self) -> None:
        self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise sqlite3.OperationalError("database is locked")
        super()._checkpoint()


def _autocheckpoint_500(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=500")


@pytest.mark.parametrize("background", [False, True])
def test_commits_leave_the_checkpoint_to_the_background_thread(tmp_path, background):
    path = tmp_path / "c.db"
    engine = create_database_engine(str(path), error=Oops)
    sa.event.listen(engine, "connect", _autocheckpoint_500)  # SQLite's default is 1000 pages
    checkpoints = _Gated(engine)
    if background:
        checkpoints.start()
    try:
        _big_commit(engine)
        size_after_commit = path.stat().st_size
        with engine.connect() as conn:
            asked = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        if not background:  # the control: SQLite copies the log into the file at commit
            assert asked == 500
            assert size_after_commit > _ROWS * _BLOB
            return
        assert asked == 0
        assert size_after_commit < _ROWS * _BLOB  # the pages are still in the log only
        assert not checkpoints.flush(timeout=0.2)  # the thread waits at the gate
        checkpoints.gate.set()
        assert checkpoints.flush(timeout=30)
        assert path.stat().st_size > _ROWS * _BLOB
        assert checkpoints.runs >= 1
        with engine.connect() as conn:  # every row is there, whichever file holds it
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == _ROWS
    finally:
        checkpoints.gate.set()
        checkpoints.close()
        engine.dispose()


def test_a_failed_checkpoint_is_logged_and_the_next_commit_tries_again(tmp_path, caplog):
    path = tmp_path / "f.db"
    engine = create_database_engine(str(path), error=Oops)
    checkpoints = _Gated(engine)
    checkpoints.fail_next = True
    checkpoints.gate.set()
    checkpoints.start()
    try:
        with caplog.at_level(logging.ERROR, logger="service_common._database"):
            _big_commit(engine)
            assert checkpoints.flush(timeout=30)
        assert [r.getMessage() for r in caplog.records] == ["WAL checkpoint failed"]
        assert caplog.records[0].error == "OperationalError"
        assert path.stat().st_size < _ROWS * _BLOB  # not copied: that run failed
        _big_commit(engine)
        assert checkpoints.flush(timeout=30)
        assert path.stat().st_size > 2 * _ROWS * _BLOB
    finally:
        checkpoints.close()
        engine.dispose()


def test_closed_checkpoints_give_commits_theirs_back(tmp_path):
    engine = create_database_engine(str(tmp_path / "g.db"), error=Oops)
    checkpoints = BackgroundCheckpoints(engine)
    assert checkpoints.flush(timeout=0)  # not started: nothing to wait for
    checkpoints.start()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    checkpoints.close()
    checkpoints.close()  # twice is harmless
    assert checkpoints.flush(timeout=0)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    engine.dispose()


def test_checkpoints_do_nothing_on_postgresql():
    engine = create_database_engine("postgresql://u@127.0.0.1:1/none", error=Oops)
    checkpoints = BackgroundCheckpoints(engine)
    checkpoints.start()  # connects to nothing, starts nothing
    assert checkpoints.flush(timeout=0)
    checkpoints.close()
    engine.dispose()


def test_closing_beside_commits_on_other_threads_is_quiet(tmp_path):
    # close() used to remove its listeners while the thread (or a committing one)
    # opened a connection: SQLAlchemy's listener list changed under its iteration
    engine = create_database_engine(str(tmp_path / "h.db"), error=Oops, pool_size=5)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    checkpoints = BackgroundCheckpoints(engine)
    checkpoints.start()
    stop = threading.Event()
    failures: list[BaseException] = []

    def commit_and_reconnect() -> None:
        try:
            while not stop.is_set():
                with engine.begin() as conn:
                    conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                engine.dispose()  # the next commit opens a new connection
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    workers = [threading.Thread(target=commit_and_reconnect) for _ in range(2)]
    for w in workers:
        w.start()
    time.sleep(0.3)
    checkpoints.close()
    stop.set()
    for w in workers:
        w.join()
    assert failures == []
    assert checkpoints.runs >= 1
    engine.dispose()


def test_reads_start_no_checkpoint(tmp_path):
    # every request returns a connection to the pool: only one that changed rows
    # gives the thread anything to copy, so reads leave it idle
    engine = create_database_engine(str(tmp_path / "r.db"), error=Oops)
    checkpoints = BackgroundCheckpoints(engine)
    checkpoints.start()
    try:
        _big_commit(engine)
        assert checkpoints.flush(timeout=30)
        runs = checkpoints.runs
        for _ in range(20):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == _ROWS
        assert checkpoints.flush(timeout=30)
        assert checkpoints.runs == runs
        _big_commit(engine)
        assert checkpoints.flush(timeout=30)
        assert checkpoints.runs == runs + 1
    finally:
        checkpoints.close()
        engine.dispose()
