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

from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = [
    "create_database_engine",
    "migrate_database",
    "normalise_database_url",
    "open_database",
    "redact_url",
]

ErrorType = Callable[[str], Exception]


def normalise_database_url(url: str) -> str:
    """Map ``postgresql://`` to the psycopg 3 driver and a bare path to SQLite."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if "://" not in url:
        return f"sqlite:///{url}"
    return url


def redact_url(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    try:
        return sa.make_url(normalise_database_url(url)).render_as_string(hide_password=True)
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
