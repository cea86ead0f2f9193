"""HTTP shell of the linkage service: extract pushes and pseudonymous reads.

The routes live in ``_routes/``, one ``APIRouter`` per resource; each parses,
authorises, calls one plain function (``LinkageService``, a store read, a
programme function) and answers a pydantic model (the read views are in
``protocols``). This module builds the app: the lifespan, which creates the
service, token table and settings on ``app.state`` (handed to routes through
the ``Annotated`` dependencies in ``_routes/deps.py``; nothing is created at
import), the mapping of package errors to status codes, and the middleware.

Every route authenticates a bearer token and checks its role:
``agency:<id>`` may only push extracts of its own agency; ``analyst``,
``coordinator`` and ``admin`` may read persons, households, links, the review
queue and its summary, runs, statistics, assessments, families and claims, and
export persons, households, families, links and review pairs in bulk;
``coordinator`` (and ``admin``) may change a family's status and lead
professional, make claim batches and record clerical decisions on review
pairs (readers list them); only ``admin`` runs an assessment or
switches the active ruleset (between cycles, no restart); ``unlock_service``
alone may fetch a family's attestation and the sealed blobs it names, run
subject-access searches, and set or lift a family's opt-out / restriction flag
(readers and it may list them). No route returns or accepts a plaintext
identifier; only the unlock service's blob route returns sealed identities,
which this service cannot open.

A push is read chunk by chunk and parsed in a worker thread, capped by
``max_upload_bytes`` and ``max_records_per_push`` (413); a resumable upload
(``/uploads``, see ``_uploads``) takes the same extract in chunks of at most
``max_chunk_bytes`` over several requests, each checked as it arrives; every
other request body is capped by ``max_body_bytes`` (413). The extract is applied in a worker
thread under the service's lock, so reads keep being answered while an
extract is linked.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service_common import (
    NO_PUBLIC_DOCS,
    BackgroundCheckpoints,
    BodyLimit,
    bearer_caller,
    instrument_app,
    serve_openapi,
)

from . import _store as store
from ._config import Settings, load_attestation_key, load_programme, load_schemas, load_tokens
from ._distributed import DaskPairs
from ._errors import (
    AuthError,
    ConflictError,
    EngineError,
    FieldError,
    IngestError,
    LinkageError,
    NotFound,
    ReplayError,
    StorageError,
    Superseded,
    TooLarge,
    UploadError,
)
from ._routes import ROUTERS
from ._routes.deps import get_service, get_settings
from ._service import (
    EngineFactory,
    LinkageService,
    configured_engine_factory,
    default_engine_factory,
)
from ._uploads import Uploads

__all__ = ["create_app", "get_service", "get_settings"]


def _status(exc: LinkageError) -> int:
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, (UploadError, FieldError)):
        return 422
    if isinstance(exc, ReplayError):
        return 409
    if isinstance(exc, IngestError):
        return 400
    if isinstance(exc, AuthError):
        return 403
    if isinstance(exc, Superseded):
        return 410
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, StorageError):
        return 503
    if isinstance(exc, EngineError):
        return 500
    return 500


def open_dask(settings: Settings) -> DaskPairs:
    """The Dask backend the settings name (``dask_scheduler``: "local" or an address)."""
    local = settings.dask_scheduler == "local"
    return DaskPairs.connect(
        None if local else settings.dask_scheduler,
        workers=settings.dask_workers,
        memory_limit=settings.dask_memory_limit,
        partitions=settings.dask_partitions or None,
    )


def verify_workers(settings: Settings) -> int:
    """The verify worker processes the settings give (None: cores - 1, at most 3)."""
    if settings.verify_workers is not None:
        return settings.verify_workers
    return max(0, min(3, (os.cpu_count() or 1) - 1))


def create_app(
    settings: Settings,
    *,
    engine_factory: EngineFactory = default_engine_factory,
) -> FastAPI:
    """The linkage service HTTP app; the lifespan loads tokens and schemas and opens the store."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tokens = load_tokens(settings.token_file)
        schemas = load_schemas(settings)
        app.state.ruleset, app.state.model = load_programme(settings)
        app.state.attestation_key = None
        if settings.attestation_key_file is not None:
            app.state.attestation_key = load_attestation_key(settings.attestation_key_file)
        pairs = None
        factory = engine_factory
        if engine_factory is default_engine_factory:
            if settings.dask_scheduler:
                pairs = await run_in_threadpool(open_dask, settings)
            factory = configured_engine_factory(pairs, settings.lsh_bits)
        sql = store.open_engine(settings.database_url)
        # SQLite: an apply's pages are copied from the log into the file on a thread
        # of their own, not on the apply's (the agency's answer need not wait for it)
        checkpoints = BackgroundCheckpoints(sql)
        service: LinkageService | None = None
        try:
            checkpoints.start()
            service = LinkageService(
                sql,
                schemas,
                factory,
                max_body_bytes=settings.max_upload_bytes,
                max_line_bytes=settings.max_line_bytes,
                max_records=settings.max_records_per_push,
                staging_dir=settings.staging_dir,
                verify_workers=verify_workers(settings),
            )
            await run_in_threadpool(service.start)
            app.state.settings = settings
            app.state.tokens = tokens
            app.state.service = service
            app.state.uploads = Uploads(
                service.receiver,
                service.apply,
                max_upload_bytes=settings.max_upload_bytes,
                max_chunk_bytes=settings.max_chunk_bytes,
                max_sessions=settings.max_upload_sessions,
                idle_seconds=settings.upload_idle_seconds,
                ahead_wait=settings.upload_ahead_wait_seconds,
            )
            yield
        finally:
            if service is not None:
                service.close()
            checkpoints.close()
            sql.dispose()
            if pairs is not None:
                pairs.close()

    # No public schema and no CDN-backed /docs page: /openapi.json needs a token.
    app = FastAPI(title="linkage-service", lifespan=lifespan, **NO_PUBLIC_DOCS)
    serve_openapi(app, bearer_caller)

    @app.exception_handler(LinkageError)
    async def package_error(_request: Request, exc: LinkageError) -> JSONResponse:
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        if isinstance(exc, IngestError):
            body["line"] = exc.line
            body["field"] = exc.field
        if isinstance(exc, FieldError):
            body["field"] = exc.field
        if isinstance(exc, Superseded):
            body["current"] = exc.current
        return JSONResponse(body, status_code=_status(exc))

    for router in ROUTERS:
        app.include_router(router)

    # Spans for every request, continuing the caller's W3C traceparent (the
    # global providers: quiet until the serve command sets telemetry up).
    instrument_app(app, "linkage-service")
    # Outermost: no route but the streamed push (capped by max_upload_bytes and
    # max_records_per_push) reads a body over max_body_bytes.
    # Resumable upload chunks are capped by max_chunk_bytes in their route.
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        exempt=("/extracts",),
        exempt_prefixes=("/uploads/",),
    )
    return app
