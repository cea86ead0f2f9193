"""Database engines for the services: URLs, SQLite durability settings, migrations.

Each service owns its own database (SQLite by default, PostgreSQL by URL) and
its own alembic scripts; what is the same for all of them lives here: reading a
URL (``postgresql://`` means the psycopg 3 driver, a bare path means SQLite),
hiding its password in messages, refusing any other backend, setting SQLite's
journal and durability pragmas on every connection, and upgrading a schema to
its newest revision. Each service passes the exception types it raises, so
callers keep seeing that service's own errors.

Must never: log or return a URL with its password.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = [
    "BackgroundCheckpoints",
    "create_database_engine",
    "migrate_database",
    "normalise_database_url",
    "open_database",
    "redact_url",
]

ErrorType = Callable[[str], Exception]
_logger = logging.getLogger(__name__)
_CHANGES_SEEN = "service_common.total_changes"  # a pooled connection's info key


def normalise_database_url(url: str) -> str:
    """Map ``postgresql://`` to the psycopg 3 driver and a bare path to SQLite."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def redact_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs (also one given as
    libpq's ``?password=`` parameter)."""
    try:
        parsed = sa.make_url(normalise_database_url(url))
        if "password" in parsed.query:
            parsed = parsed.update_query_dict({"password": "***"})
        return parsed.render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return "<unparseable URL>"


def create_database_engine(
    url: str,
    *,
    error: ErrorType,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    busy_timeout_ms: int = 30_000,
    foreign_keys: bool = False,
    **engine_options: Any,
) -> Engine:
    """An engine for ``url`` (sqlite or postgresql), without migrating.

    SQLite connections get WAL (readers run beside the writer), the given
    ``synchronous`` level and busy timeout, and foreign keys if asked; a URL
    that cannot be used raises ``error`` with the password hidden.
    """
    try:
        parsed = sa.make_url(normalise_database_url(url))
    except (SQLAlchemyError, ValueError) as exc:
        raise error(f"cannot parse database URL {redact_url(url)!r}: {exc}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise error(
            f"unsupported database {parsed.get_backend_name()!r} in {redact_url(url)!r}: "
            "expected sqlite or postgresql"
        )
    if parsed.get_backend_name() == "sqlite":
        engine_options = {
            k: v for k, v in engine_options.items() if k not in ("pool_size", "max_overflow")
        }
    try:
        engine = sa.create_engine(parsed, **engine_options)
    except (SQLAlchemyError, ValueError, ImportError, TypeError) as exc:
        raise error(f"cannot use database URL {redact_url(url)!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        pragmas = [
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={synchronous}",
            f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
        ]
        if foreign_keys:
            pragmas.append("PRAGMA foreign_keys=ON")

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in pragmas:
                cursor.execute(pragma)
            cursor.close()

        sa.event.listen(engine, "connect", on_connect)
    return engine


def migrate_database(engine: Engine, script_location: str, what: str, error: ErrorType) -> None:
    """Bring ``what``'s schema to the newest revision of the alembic scripts at
    ``script_location`` (``package:_migrations``); ``error`` on failure.

    Every pending revision runs in one transaction, on SQLite as on PostgreSQL: an
    upgrade that fails part way leaves the schema and its data as they were.
    """
    config = Config()
    config.set_main_option("script_location", script_location)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                # Python's sqlite3 opens a transaction only before INSERT, UPDATE and
                # DELETE, so DDL would run and stay outside it: a revision failing half
                # way would leave the tables before it created. One explicit BEGIN puts
                # the whole upgrade, DDL and data, in the one transaction.
                connection.exec_driver_sql("BEGIN")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise error(f"cannot migrate the {what}: {exc}") from exc


def open_database(
    create: Callable[[str], Engine],
    upgrade: Callable[[Engine], None],
    url: str,
    *,
    migrate_schema: bool = True,
) -> Engine:
    """``create(url)``, then (by default) ``upgrade`` it; the engine is disposed on failure."""
    engine = create(url)
    if migrate_schema:
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


class BackgroundCheckpoints:
    """Moves an SQLite engine's WAL checkpoints off the threads that commit.

    In WAL mode a commit appends pages to the ``-wal`` file, fsynced before the
    commit returns (``synchronous=FULL``); copying them back into the database
    file, the checkpoint, is done by whichever commit takes the log past
    ``wal_autocheckpoint`` pages, on the thread that committed. After a bulk
    write that is most of what the transaction wrote: 3.9 s after the 1.8 s
    commit of an extract of 348,000 records, on the thread that applies
    extracts, while the agency waits for its answer. Here the engine's
    connections never checkpoint on commit (``PRAGMA wal_autocheckpoint=0``,
    set on each new connection; :meth:`start` empties the pool so none is
    left without it), and a thread of its own runs a passive checkpoint each
    time a connection that changed rows goes back to the pool (so after its
    transaction has ended; SQLite's ``total_changes`` says whether it did, so
    reads start nothing); those returned while one runs are covered by one more
    run. A transaction that changes no row (DDL, ``ANALYZE``) leaves its pages
    in the log for the next writer's checkpoint.

    Durability and what readers see are unchanged: a commit is in the fsynced
    log before it returns, and readers read the log. A passive checkpoint
    never waits for readers or writers, and one with nothing to copy costs a
    look at the log's index; a failed one is logged and the next return of a
    connection tries again. On PostgreSQL (which checkpoints by itself) this
    does nothing. :meth:`close` stops the thread and gives commits their
    checkpoints back; the last connection to close checkpoints what is left,
    as SQLite always does.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs = 0  # checkpoints run (for tests and figures)
        self._active = engine.dialect.name == "sqlite"
        self._cond = threading.Condition()
        self._asked = 0  # writing connections returned to the pool
        self._done = 0  # of those, how many a finished checkpoint came after
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)

    def start(self) -> None:
        """Stop commits checkpointing and start the thread (SQLite only)."""
        if not self._active:
            return
        sa.event.listen(self.engine, "connect", self._connected)
        sa.event.listen(self.engine, "checkin", self._returned)
        self.engine.dispose()  # pooled connections were opened before the listener
        self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until a checkpoint has run after every writing connection returned so far.

        True at once when the thread is not running; False on timeout.
        """
        with self._cond:
            target = self._asked
            return self._cond.wait_for(
                lambda: self._done >= target or not self._thread.is_alive(), timeout
            )

    def close(self) -> None:
        """Stop the thread (a running checkpoint finishes first); commits checkpoint again."""
        if not self._thread.is_alive():
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        # the listeners stay (removing one while another thread opens a connection
        # would change the list SQLAlchemy is iterating) but do nothing from now on
        self.engine.dispose()  # new connections checkpoint on commit again

    def _connected(self, dbapi_connection: Any, _record: Any) -> None:
        if not self._closing:
            dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    def _returned(self, dbapi_connection: Any, record: Any) -> None:
        if self._closing or threading.get_ident() == self._thread.ident:
            return  # closed, or the checkpoint's own connection
        if dbapi_connection is not None:
            changes = dbapi_connection.total_changes
            if record.info.get(_CHANGES_SEEN, 0) == changes:
                return  # no row changed since it last came back: nothing new in the log
            record.info[_CHANGES_SEEN] = changes
        with self._cond:
            self._asked += 1
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._asked > self._done)
                if self._closing:
                    return
                target = self._asked
            try:
                self._checkpoint()
                self.runs += 1
            except Exception as exc:  # the next return of a connection tries again
                _logger.error("WAL checkpoint failed", extra={"error": type(exc).__name__})
            with self._cond:
                self._done = target
                self._cond.notify_all()

    def _checkpoint(self) -> None:
        raw = self.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        finally:
            raw.close()
