"""HTTP shell of the linkage service: extract pushes and pseudonymous reads.

Routes parse, authorise, call one plain function (``LinkageService`` or
``_store`` reads) and map package errors to status codes. The service, token
table and settings live on ``app.state``, created in the lifespan and handed
to routes through the ``Annotated`` dependencies below; nothing is created at
import.

Every route authenticates a bearer token and checks its role:
``agency:<id>`` may only push extracts of its own agency; ``analyst`` and
``admin`` may read persons, households, links, review candidates, runs and
statistics; ``unlock_service`` is reserved for fetching sealed blobs (a later
issue) and may only ask for ``/health``. No route returns or accepts a
plaintext identifier, and none returns a sealed identity.

A push is read chunk by chunk and parsed in a worker thread; the extract is
applied in a worker thread under the service's lock, so reads keep being
answered while an extract is linked.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from . import _store as store
from ._config import (
    Caller,
    Settings,
    TokenTable,
    agency_of,
    load_attestation_key,
    load_schemas,
    load_tokens,
)
from ._errors import (
    AuthError,
    EngineError,
    IngestError,
    LinkageError,
    NotFound,
    ReplayError,
    StorageError,
    TooLarge,
)
from ._service import EngineFactory, LinkageService, default_engine_factory

__all__ = ["create_app", "get_service", "get_settings"]

MAX_PAGE = 1000
_logger = logging.getLogger("linkage_service.api")


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> LinkageService:
    """The running linkage service."""
    service: LinkageService = request.app.state.service
    return service


def _caller(request: Request) -> Caller:
    tokens: TokenTable = request.app.state.tokens
    caller = tokens.authenticate(request.headers.get("authorization"))
    if caller is None:
        raise HTTPException(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
    return caller


def require(*roles: str) -> Callable[[Request], Caller]:
    """A dependency that admits only callers holding one of ``roles``."""

    def check(request: Request) -> Caller:
        caller = _caller(request)
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role!r} may not do this")
        return caller

    return check


def require_agency(request: Request) -> Caller:
    """A dependency that admits only agency callers (``agency:<id>``)."""
    caller = _caller(request)
    if agency_of(caller) is None:
        raise HTTPException(403, f"role {caller.role!r} may not push extracts")
    return caller


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[LinkageService, Depends(get_service)]
Reader = Annotated[Caller, Depends(require("analyst", "admin"))]
AnyCaller = Annotated[Caller, Depends(_caller)]
AgencyCaller = Annotated[Caller, Depends(require_agency)]
Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def _status(exc: LinkageError) -> int:
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, ReplayError):
        return 409
    if isinstance(exc, IngestError):
        return 400
    if isinstance(exc, AuthError):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, StorageError):
        return 503
    if isinstance(exc, EngineError):
        return 500
    return 500


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
        if settings.attestation_key_file is not None:
            app.state.attestation_key = load_attestation_key(settings.attestation_key_file)
        sql = store.open_engine(settings.database_url)
        try:
            service = LinkageService(
                sql,
                schemas,
                engine_factory,
                max_body_bytes=settings.max_upload_bytes,
                max_line_bytes=settings.max_line_bytes,
                staging_dir=settings.staging_dir,
            )
            await run_in_threadpool(service.start)
            app.state.settings = settings
            app.state.tokens = tokens
            app.state.service = service
            yield
        finally:
            sql.dispose()

    app = FastAPI(title="linkage-service", lifespan=lifespan)

    @app.exception_handler(LinkageError)
    async def package_error(_request: Request, exc: LinkageError) -> JSONResponse:
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        if isinstance(exc, IngestError):
            body["line"] = exc.line
            body["field"] = exc.field
        return JSONResponse(body, status_code=_status(exc))

    @app.post("/extracts")
    async def push_extract(
        request: Request, caller: AgencyCaller, service: ServiceDep
    ) -> dict[str, Any]:
        """Stream one signed extract in; apply it atomically; the run summary."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > service.max_body_bytes:
            raise TooLarge(
                f"the upload is {length} bytes, larger than the limit of "
                f"{service.max_body_bytes} bytes"
            )
        agency_id = agency_of(caller)
        assert agency_id is not None
        receiver = service.receiver(agency_id)
        try:
            async for chunk in request.stream():
                if chunk:
                    await run_in_threadpool(receiver.feed, chunk)
            received = await run_in_threadpool(receiver.finish)
            return await run_in_threadpool(service.apply, received)
        except LinkageError as exc:
            header = receiver.header
            _logger.warning(
                "extract refused",
                extra={
                    "agency_id": agency_of(caller),
                    "extract_id": header.extract_id if header else "",
                    "error": type(exc).__name__,
                },
            )
            raise
        finally:
            receiver.close()

    @app.get("/persons")
    def persons(
        _caller: Reader, service: ServiceDep, after: str | None = None, limit: Page = 100
    ) -> dict[str, Any]:
        """A page of current persons (ids, household, record count)."""
        return store.list_persons(service.sql, after, limit)

    @app.get("/persons/{person_id}")
    def person(_caller: Reader, service: ServiceDep, person_id: str) -> dict[str, Any]:
        """One person with household and linked records (coarse attributes, indicators)."""
        return store.get_person(service.sql, person_id)

    @app.get("/households")
    def households(
        _caller: Reader, service: ServiceDep, after: str | None = None, limit: Page = 100
    ) -> dict[str, Any]:
        """A page of current households."""
        return store.list_households(service.sql, after, limit)

    @app.get("/households/{household_id}")
    def household(_caller: Reader, service: ServiceDep, household_id: str) -> dict[str, Any]:
        """One household with its persons and their records."""
        return store.get_household(service.sql, household_id)

    @app.get("/records/{agency_id}/{record_ref}/links")
    def links(
        _caller: Reader, service: ServiceDep, agency_id: str, record_ref: str
    ) -> dict[str, Any]:
        """Link evidence and review candidates of one active record."""
        return store.record_links(service.sql, agency_id, record_ref)

    @app.get("/review")
    def review(
        _caller: Reader,
        service: ServiceDep,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Page = 100,
    ) -> dict[str, Any]:
        """Review-band candidate pairs, highest score first."""
        return store.list_review(service.sql, offset, limit)

    @app.get("/runs")
    def runs(_caller: Reader, service: ServiceDep, limit: Page = 100) -> dict[str, Any]:
        """Linkage run history, newest first."""
        return {"runs": store.list_runs(service.sql, limit)}

    @app.get("/runs/{run_id}")
    def run(_caller: Reader, service: ServiceDep, run_id: int) -> dict[str, Any]:
        """One linkage run."""
        return store.get_run(service.sql, run_id)

    @app.get("/stats")
    def stats(_caller: Reader, service: ServiceDep) -> dict[str, Any]:
        """Counts of records, persons, households, links, review candidates and runs."""
        return store.statistics(service.sql)

    @app.get("/health")
    def health(caller: AnyCaller, service: ServiceDep) -> dict[str, Any]:
        """Whether the database answers and an extract is being applied."""
        store.ping(service.sql)
        return {"status": "ok", "ingesting": service.busy.is_set(), "role": caller.role}

    return app
