"""HTTP shell of the linkage service: extract pushes and pseudonymous reads.

Routes parse, authorise, call one plain function (``LinkageService`` or
``_store`` reads) and map package errors to status codes. The service, token
table and settings live on ``app.state``, created in the lifespan and handed
to routes through the ``Annotated`` dependencies below; nothing is created at
import.

Every route authenticates a bearer token and checks its role:
``agency:<id>`` may only push extracts of its own agency; ``analyst``,
``coordinator`` and ``admin`` may read persons, households, links, the review
queue and its summary, runs, statistics, assessments, families and claims;
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
``max_upload_bytes`` and ``max_records_per_push`` (413); every other request
body is capped by ``max_body_bytes`` (413). The extract is applied in a worker
thread under the service's lock, so reads keep being answered while an
extract is linked.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from protocols import FamilyBlobs, SignedAttestation, SubjectAccessAnswer, SubjectQuery
from service_common import (
    MAX_SQL_INT,
    NO_PUBLIC_DOCS,
    BodyLimit,
    bearer_caller,
    instrument_app,
    require_roles,
    serve_openapi,
)

from . import _decisions as decisions_
from . import _review as review_
from . import _store as store
from ._config import (
    Caller,
    Settings,
    agency_of,
    load_attestation_key,
    load_programme,
    load_schemas,
    load_tokens,
)
from ._decisions import REASON_PATTERN, DecisionList, DecisionView
from ._errors import (
    AuthError,
    ConflictError,
    EngineError,
    IngestError,
    LinkageError,
    NotFound,
    ReplayError,
    StorageError,
    Superseded,
    TooLarge,
)
from ._review import ReviewQueue, ReviewSummary
from ._service import EngineFactory, LinkageService, default_engine_factory
from .programme import _active as active
from .programme import _assessment as assessment
from .programme import _attestations as attestations
from .programme import _claims as claims_
from .programme import _reports as reports
from .programme import _restrictions as restrictions_
from .programme._riskmodel import RiskModel
from .programme._ruleset import Ruleset, default_ruleset, shipped_rulesets

__all__ = ["create_app", "get_service", "get_settings"]

MAX_PAGE = 1000
MAX_OFFSET = 10_000_000  # far beyond any queue; bigger values are refused (422), not overflowed
_logger = logging.getLogger("linkage_service.api")


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> LinkageService:
    """The running linkage service."""
    service: LinkageService = request.app.state.service
    return service


def require_agency(request: Request) -> Caller:
    """A dependency that admits only agency callers (``agency:<id>``)."""
    caller = bearer_caller(request)
    if agency_of(caller) is None:
        raise HTTPException(403, f"role {caller.role!r} may not push extracts")
    return caller


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[LinkageService, Depends(get_service)]
Reader = Annotated[Caller, Depends(require_roles("analyst", "coordinator", "admin"))]
Coordinator = Annotated[Caller, Depends(require_roles("coordinator", "admin"))]
Admin = Annotated[Caller, Depends(require_roles("admin"))]
UnlockService = Annotated[Caller, Depends(require_roles("unlock_service"))]
Resolver = Annotated[
    Caller, Depends(require_roles("analyst", "coordinator", "admin", "unlock_service"))
]
RestrictionReader = Annotated[
    Caller, Depends(require_roles("analyst", "coordinator", "admin", "unlock_service"))
]
FAMILY_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
AnyCaller = Annotated[Caller, Depends(bearer_caller)]
AgencyCaller = Annotated[Caller, Depends(require_agency)]
Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
WINDOW_ID = r"^[0-9]{4}-[A-Z][0-9]{1,2}$"  # a claim window label (YYYY-H1, YYYY-Q3 ...)
WindowId = Annotated[str | None, Query(pattern=WINDOW_ID)]
# Ids are bounded so no value a database integer cannot hold reaches a query (422).
CycleId = Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)]


def _status(exc: LinkageError) -> int:
    if isinstance(exc, TooLarge):
        return 413
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


def _who(caller: Caller) -> str:
    return f"{caller.role}:{caller.label}"[:80]


RecordId = Annotated[int, Path(ge=1, le=MAX_SQL_INT)]


class DecisionRequest(BaseModel):
    """A reviewer's decision on a record pair, with a reason code; ``change`` replaces one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["match", "non_match"]
    reason: str = Field(pattern=REASON_PATTERN)
    change: bool = False


class AssessRequest(BaseModel):
    """Run an assessment cycle as at a date (today by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_at: dt.date | None = None


class StatusRequest(BaseModel):
    """Move a family to a new status, with a reason code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["identified", "attached", "in_progress", "pending_claim", "claimed", "closed"]
    reason: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")
    on: dt.date | None = None


class ClaimRequest(BaseModel):
    """Make a claim batch for a claim window (all families, or those named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # checked against the active programme calendar (YYYY-H1, YYYY-Q3 ...)
    window_id: str = Field(pattern=WINDOW_ID)
    family_ids: list[str] | None = Field(default=None, max_length=10_000)


class RulesetSwitch(BaseModel):
    """Switch the active ruleset (a shipped name) from the next cycle on, with a reason code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ruleset: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,39}$")
    reason: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")


class ReportQuery(BaseModel):
    """A report's query: cycle, format, and the parameters (each report takes some)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cycle_id: int | None = Field(default=None, ge=1, le=MAX_SQL_INT)
    format: Literal["json", "csv"] = "json"

    problem: str | None = Field(default=None, max_length=48)
    limit: int | None = Field(default=None, ge=1, le=100_000)
    cohort: str | None = Field(default=None, pattern=r"^[0-9]{4}-Q[1-4]$")
    by: Literal["area", "age_band", "lead_professional", "status"] | None = None
    cadence_days: int | None = Field(default=None, ge=1, le=366)
    horizon_cycles: int | None = Field(default=None, ge=1, le=24)
    unlock_margin: int | None = Field(default=None, ge=0, le=100)
    margin_pct: float | None = Field(default=None, gt=0, le=50)
    average_gbp: int | None = Field(default=None, ge=0)
    multiple_needs_gbp: int | None = Field(default=None, ge=0)
    multiple_needs_from: int | None = Field(default=None, ge=1, le=20)
    years: float | None = Field(default=None, gt=0, le=10)
    intervention_gbp: int | None = Field(default=None, ge=0)


class LeadRequest(BaseModel):
    """A family's lead professional: a professional id or team code (None clears it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str | None = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class RestrictionRequest(BaseModel):
    """A family's opt-out / restriction flag, as the unlock service records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")


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
        sql = store.open_engine(settings.database_url)
        try:
            service = LinkageService(
                sql,
                schemas,
                engine_factory,
                max_body_bytes=settings.max_upload_bytes,
                max_line_bytes=settings.max_line_bytes,
                max_records=settings.max_records_per_push,
                staging_dir=settings.staging_dir,
            )
            await run_in_threadpool(service.start)
            app.state.settings = settings
            app.state.tokens = tokens
            app.state.service = service
            yield
        finally:
            sql.dispose()

    # No public schema and no CDN-backed /docs page: /openapi.json needs a token.
    app = FastAPI(title="linkage-service", lifespan=lifespan, **NO_PUBLIC_DOCS)
    serve_openapi(app, bearer_caller)

    @app.exception_handler(LinkageError)
    async def package_error(_request: Request, exc: LinkageError) -> JSONResponse:
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        if isinstance(exc, IngestError):
            body["line"] = exc.line
            body["field"] = exc.field
        if isinstance(exc, Superseded):
            body["current"] = exc.current
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
                f"{service.max_body_bytes} bytes (max_upload_bytes)"
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

    @app.get("/ids/{any_id}")
    def resolve(_caller: Resolver, service: ServiceDep, any_id: str) -> dict[str, Any]:
        """Where a person, household or family id ever issued lives now (its successors)."""
        return store.resolve_id(service.sql, any_id)

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

    @app.get("/review", response_model=ReviewQueue)
    def review(
        _caller: Reader,
        service: ServiceDep,
        offset: Offset = 0,
        limit: Page = 100,
        impactful_only: bool = False,
    ) -> ReviewQueue:
        """The review queue: pairs that would change a family first, then the least certain."""
        return review_.review_queue(service.sql, offset, limit, impactful_only=impactful_only)

    @app.get("/review/summary", response_model=ReviewSummary)
    def review_summary(_caller: Reader, service: ServiceDep) -> ReviewSummary:
        """How many review pairs, how many would change a family, and what the rest are."""
        return review_.review_summary(service.sql)

    @app.post("/review/{record_a}/{record_b}/decision", response_model=DecisionView)
    def decide(
        caller: Coordinator,
        service: ServiceDep,
        record_a: RecordId,
        record_b: RecordId,
        body: DecisionRequest,
    ) -> DecisionView:
        """Record match / non-match on a pair (409 if decided, unless an explicit change)."""
        if record_a == record_b:
            raise HTTPException(422, f"record {record_a} cannot be decided against itself")
        # between extracts: a push never reads the decisions while one is being stored
        view = service.exclusive(
            lambda: decisions_.decide(
                service.sql,
                record_a,
                record_b,
                body.decision,
                body.reason,
                actor=_who(caller),
                change=body.change,
            )
        )
        _logger.info(
            "review decision",
            extra={"decision_id": view.id, "decision": view.decision, "role": caller.role},
        )
        return view

    @app.get("/review/decisions", response_model=DecisionList)
    def decisions(
        _caller: Reader,
        service: ServiceDep,
        record_id: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
        current_only: bool = False,
        after: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
        limit: Page = 1000,
    ) -> DecisionList:
        """Clerical decisions, oldest first: who, when, why, and their effect now."""
        return decisions_.list_decisions(
            service.sql, record_id=record_id, current_only=current_only, after=after, limit=limit
        )

    @app.get("/runs")
    def runs(_caller: Reader, service: ServiceDep, limit: Page = 100) -> dict[str, Any]:
        """Linkage run history, newest first."""
        return {"runs": store.list_runs(service.sql, limit)}

    @app.get("/runs/{run_id}")
    def run(
        _caller: Reader, service: ServiceDep, run_id: Annotated[int, Path(ge=1, le=MAX_SQL_INT)]
    ) -> dict[str, Any]:
        """One linkage run."""
        return store.get_run(service.sql, run_id)

    @app.get("/stats")
    def stats(_caller: Reader, service: ServiceDep) -> dict[str, Any]:
        """Counts of records, persons, households, links, review candidates and runs."""
        return store.statistics(service.sql)

    @app.get("/programme")
    def programme(_caller: Reader, request: Request, service: ServiceDep) -> dict[str, Any]:
        """The ruleset and risk model in force: names, versions, SHA-256 and content."""
        ruleset = active.active_ruleset(service.sql, request.app.state.ruleset)
        model: RiskModel = request.app.state.model
        return {
            "ruleset": {"sha256": ruleset.sha256(), **ruleset.model_dump(mode="json")},
            "model": {"sha256": model.sha256(), **model.model_dump(mode="json")},
            "switches": active.ruleset_switches(service.sql),
        }

    @app.post("/programme/ruleset")
    async def switch_ruleset(
        caller: Admin, request: Request, service: ServiceDep, body: RulesetSwitch
    ) -> dict[str, Any]:
        """Switch the active ruleset (a shipped one) between cycles, without a restart."""
        if body.ruleset not in shipped_rulesets():
            raise NotFound(
                f"no shipped ruleset {body.ruleset!r}; shipped: "
                f"{', '.join(sorted(shipped_rulesets()))} (a council's own file: "
                "linkage-service ruleset use FILE)"
            )
        new = default_ruleset(body.ruleset)
        configured: Ruleset = request.app.state.ruleset

        def run() -> dict[str, Any]:
            return active.switch_ruleset(
                service.sql,
                new,
                request.app.state.model,
                configured,
                actor=_who(caller),
                reason=body.reason,
            )

        out = await run_in_threadpool(service.exclusive, run)
        _logger.info("ruleset switched", extra={"ruleset": new.name, "role": caller.role})
        return out

    @app.post("/assessments")
    async def assess(
        caller: Admin,
        request: Request,
        service: ServiceDep,
        settings: SettingsDep,
        body: Annotated[AssessRequest | None, Body()] = None,
    ) -> dict[str, Any]:
        """Assess every family now (or as at a date): snapshots, statuses, attestations."""
        as_at = (body.as_at if body else None) or dt.date.today()

        def run() -> dict[str, Any]:
            result = assessment.run_cycle(
                service.sql,
                active.active_ruleset(service.sql, request.app.state.ruleset),
                request.app.state.model,
                as_at,
                actor=_who(caller),
                signer=request.app.state.attestation_key,
                restrictions=settings.restrictions,
            )
            return result.stats

        stats = await run_in_threadpool(service.exclusive, run)
        _logger.info("assessment stored", extra={"cycle_id": stats["cycle_id"]})
        return stats

    @app.get("/assessments")
    def assessments(_caller: Reader, service: ServiceDep, limit: Page = 100) -> dict[str, Any]:
        """Assessment cycles, newest first, with ruleset and model versions and counts."""
        return {"cycles": assessment.list_cycles(service.sql, limit)}

    @app.get("/families")
    def families(
        _caller: Reader,
        service: ServiceDep,
        cycle_id: CycleId = None,
        eligible: bool | None = None,
        status: str | None = None,
        district: Annotated[str | None, Query(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")] = None,
        problem: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,47}$")] = None,
        min_score: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
        max_score: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
        offset: Offset = 0,
        limit: Page = 100,
    ) -> dict[str, Any]:
        """A page of a cycle's families (the latest by default), highest score first."""
        return assessment.list_families(
            service.sql,
            cycle_id=cycle_id,
            eligible=eligible,
            status=status,
            district=district,
            problem=problem,
            min_score=min_score,
            max_score=max_score,
            offset=offset,
            limit=limit,
        )

    @app.get("/families/{family_id}")
    def family(_caller: Reader, service: ServiceDep, family_id: str) -> dict[str, Any]:
        """A family: score with reason codes, problems with evidence, status, progress."""
        return assessment.family_view(service.sql, family_id)

    @app.get("/families/{family_id}/outcomes")
    def outcomes(_caller: Reader, service: ServiceDep, family_id: str) -> dict[str, Any]:
        """The attached family's outcome plan against its snapshots since baseline."""
        return claims_.family_outcomes(service.sql, family_id)

    @app.post("/families/{family_id}/status")
    def change_status(
        caller: Coordinator, service: ServiceDep, family_id: str, body: StatusRequest
    ) -> dict[str, Any]:
        """Move a family to a new status (attaching fixes its baseline)."""
        return assessment.set_status(
            service.sql, family_id, body.status, actor=_who(caller), reason=body.reason, on=body.on
        )

    @app.get("/families/{family_id}/attestation")
    def attestation(
        _caller: UnlockService, service: ServiceDep, family_id: str
    ) -> SignedAttestation:
        """The family's signed attestation from the latest assessment (unlock service only)."""
        return attestations.current_attestation(service.sql, family_id)

    @app.get("/families/{family_id}/blobs")
    def blobs(
        caller: UnlockService,
        service: ServiceDep,
        family_id: str,
        attestation_sha256: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
    ) -> FamilyBlobs:
        """The sealed blobs of exactly the records the attestation names (unlock service only)."""
        out = attestations.family_blobs(service.sql, family_id, attestation_sha256)
        _logger.info(
            "sealed blobs released",
            extra={"family_id": family_id, "count": len(out.blobs), "role": caller.role},
        )
        return out

    @app.post("/subject-access", response_model=SubjectAccessAnswer)
    def subject_access(
        caller: UnlockService, service: ServiceDep, query: SubjectQuery
    ) -> SubjectAccessAnswer:
        """What is held about the person an encoded identity matches (unlock service only).

        Records with their data and indicators, family memberships with every
        assessment's score and reasons, status and claims, and the records'
        sealed identity blobs, still sealed.
        """
        out = service.search(query)
        _logger.info(
            "subject access answered",
            extra={"count": len(out.blobs), "role": caller.role},
        )
        return out

    @app.post("/claims")
    def make_claims(
        caller: Coordinator, service: ServiceDep, settings: SettingsDep, body: ClaimRequest
    ) -> dict[str, Any]:
        """A claim batch for a window: attachment fees and results with their evidence."""
        return claims_.create_claims(
            service.sql,
            body.window_id,
            actor=_who(caller),
            family_ids=body.family_ids,
            restrictions=settings.restrictions,
        )

    @app.put("/restrictions/{family_id}")
    def put_restriction(
        caller: UnlockService,
        service: ServiceDep,
        settings: SettingsDep,
        family_id: Annotated[str, Path(pattern=FAMILY_ID)],
        body: RestrictionRequest,
    ) -> dict[str, Any]:
        """Set a family's opt-out / restriction flag (forwarded by the unlock service)."""
        return restrictions_.set_restriction(
            service.sql, family_id, body.kind, settings.restrictions, actor=_who(caller)
        )

    @app.delete("/restrictions/{family_id}")
    def lift_restriction(
        _caller: UnlockService,
        service: ServiceDep,
        family_id: Annotated[str, Path(pattern=FAMILY_ID)],
    ) -> dict[str, Any]:
        """Lift a family's flag (forwarded by the unlock service)."""
        return restrictions_.lift_restriction(service.sql, family_id)

    @app.get("/restrictions")
    def restrictions(
        _caller: RestrictionReader, service: ServiceDep, settings: SettingsDep
    ) -> dict[str, Any]:
        """Flags in force and what each kind stops under the configured rules."""
        return {
            "rules": {k: v.model_dump() for k, v in sorted(settings.restrictions.items())},
            "restrictions": restrictions_.list_restrictions(service.sql, settings.restrictions),
        }

    @app.get("/claims")
    def list_claims(
        _caller: Reader, service: ServiceDep, window_id: WindowId = None
    ) -> dict[str, Any]:
        """Claims (of one window, or all) with their evidence."""
        return {"claims": claims_.list_claims(service.sql, window_id)}

    @app.get("/claims/export")
    def export_claims(
        _caller: Reader,
        service: ServiceDep,
        window_id: WindowId = None,
        format: Literal["csv", "json"] = "csv",
        sample_pct: Annotated[float, Query(gt=0, le=100)] = 100.0,
        seed: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
    ) -> PlainTextResponse:
        """Claims for internal audit as a file: CSV, one row per evidence item, or JSON."""
        rows = claims_.list_claims(service.sql, window_id)
        name = f"claims-{window_id or 'all'}"
        if format == "json":
            text = claims_.export_claims_json(rows, sample_pct=sample_pct, seed=seed)
            media = "application/json"
        else:
            text = claims_.export_claims(rows, sample_pct=sample_pct, seed=seed)
            media = "text/csv"
        return PlainTextResponse(
            text,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
        )

    @app.get("/reports/{name}")
    def report(
        _caller: Reader,
        service: ServiceDep,
        name: str,
        query: Annotated[ReportQuery, Query()],
    ) -> Any:
        """A programme report for coordinators (JSON, or CSV with ``format=csv``)."""
        params = query.model_dump(exclude={"cycle_id", "format"})
        out = reports.run_report(service.sql, name, query.cycle_id, **params)
        if query.format == "csv":
            return PlainTextResponse(reports.to_csv(out), media_type="text/csv")
        return out

    @app.post("/families/{family_id}/lead-professional")
    def lead_professional(
        caller: Coordinator, service: ServiceDep, family_id: str, body: LeadRequest
    ) -> dict[str, Any]:
        """Record (or clear) a family's lead professional: a code, never a name."""
        return assessment.set_lead_professional(
            service.sql, family_id, body.code, actor=_who(caller)
        )

    @app.get("/health")
    def health(caller: AnyCaller, service: ServiceDep) -> dict[str, Any]:
        """Whether the database answers and an extract is being applied."""
        store.ping(service.sql)
        return {"status": "ok", "ingesting": service.busy.is_set(), "role": caller.role}

    # Spans for every request, continuing the caller's W3C traceparent (the
    # global providers: quiet until the serve command sets telemetry up).
    instrument_app(app, "linkage-service")
    # Outermost: no route but the streamed push (capped by max_upload_bytes and
    # max_records_per_push) reads a body over max_body_bytes.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, exempt=("/extracts",))
    return app
