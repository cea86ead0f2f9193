"""HTTP shell of the unlock service.

Routes parse, authenticate, call one :class:`UnlockService` method and map
package errors to status codes with their reason code. The service, settings
and audit log live on ``app.state``, created in the lifespan (which fails
closed on any configuration problem) and handed to routes through the
``Annotated`` dependencies below; nothing is created at import.

Every route but ``/health`` authenticates a professional (bearer JWT bound
to their key, plus a request signature over the exact body; see
``_auth``). Request bodies are capped at ``max_body_bytes`` (413). The audit
log's own read endpoints (checkpoint, proofs, receipts, leaves, entries) are
the :func:`audit_log.create_app` app mounted at ``/audit`` over the same log,
with its own bearer-token file (roles ``reader`` and ``ig_officer`` only, so
nothing can append through it).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

import audit_log
from audit_log import AuditLog, AuditLogError, NoteSigner, WitnessEndpoint
from audit_log._config import witness_verifier
from protocols import (
    ApprovalAnswer,
    ApprovalList,
    DecisionAnswer,
    ErrorAnswer,
    FlagChange,
    Health,
    PendingAnswer,
    PurposeList,
    ReleasedAnswer,
    RequestPage,
    RequestView,
    ReviewClosed,
    ReviewList,
    SubjectAccessReport,
    SubjectQuery,
    reason_text,
)
from service_common import (
    NO_PUBLIC_DOCS,
    BodyLimit,
    Periodic,
    instrument_app,
    serve_openapi,
    traced_transport,
)

from ._auth import SIGNATURE_HEADER, TokenVerifier
from ._config import (
    Settings,
    load_audit_signer,
    load_audit_tokens,
    load_linkage_token,
    load_public_key,
)
from ._errors import ConfigError, Refused, UnlockError
from ._linkage import LinkageClient
from ._policy import Policy, load_policy
from ._release import SealKeyring
from ._service import Pending, UnlockService, audit_failure, utcnow
from ._store import Professional, open_engine

__all__ = ["create_app", "get_service", "get_settings"]

_logger = logging.getLogger("unlock_service.api")
FamilyIdField = Annotated[str, Field(pattern=r"^fam_[0-9a-f]{16,64}$")]
CodeField = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]
# Path ids have the audit log's own patterns, so a malformed one is the caller's
# 422 here rather than an entry that fails validation deep in the service.
RequestId = Annotated[str, Path(pattern=r"^req_[0-9a-f]{16,64}$")]
ProfessionalId = Annotated[str, Path(pattern=r"^pro_[0-9a-f]{16,64}$")]
FamilyIdPath = Annotated[str, Path(pattern=r"^fam_[0-9a-f]{16,64}$")]
# Statuses answered with an ErrorAnswer (the package error handler), for the schema.
_ERROR_STATUSES = (401, 403, 404, 409, 410, 429, 502, 503)


class UnlockBody(BaseModel):
    """A request for a family's identities."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family_id: FamilyIdField
    purpose_code: CodeField
    # Bounded here only against abuse; the policy's own cap is a logged refusal.
    justification: str = Field(max_length=20_000)
    break_glass: bool = False


class ApprovalBody(BaseModel):
    """A second person's answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["approve", "decline"]


class ReviewBody(BaseModel):
    """An IG officer's review outcome (the notes are logged only as a hash)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Literal["upheld", "not_upheld"]
    notes: str = Field(max_length=20_000)


class FlagBody(BaseModel):
    """Set a family's opt-out or restriction flag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family_id: FamilyIdField
    flag: Literal["OPT_OUT", "RESTRICTED"]
    note: str = Field(default="", max_length=20_000)


class LiftBody(BaseModel):
    """Lift a family's flag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str = Field(default="", max_length=20_000)


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> UnlockService:
    """The running unlock service."""
    service: UnlockService = request.app.state.service
    return service


async def authenticated(request: Request) -> Professional:
    """The professional who signed this request (401 with a reason code otherwise)."""
    service = get_service(request)
    body = await request.body()
    raw_path = request.scope.get("raw_path") or request.url.path.encode("utf-8")
    query = request.scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    return await run_in_threadpool(
        service.authenticate,
        request.method,
        target,
        body,
        request.headers.get("authorization"),
        request.headers.get(SIGNATURE_HEADER),
    )


ServiceDep = Annotated[UnlockService, Depends(get_service)]
Pro = Annotated[Professional, Depends(authenticated)]


def _housekeeping(service: UnlockService, interval: float) -> Periodic:
    """Signs a checkpoint, forgets old nonces, settles stale claims and re-sends the
    opt-out / restriction flags the linkage service missed, every ``interval`` seconds."""

    def tick() -> None:
        try:
            service.audit.checkpoint()
            service.purge_nonces()
            service.recover()
            service.sync_restrictions()
        except AuditLogError as exc:
            # Say why: a rolled-back log, for one, fails here every tick.
            _logger.warning(
                "housekeeping failed",
                extra={"error": type(exc).__name__, "detail": audit_failure(exc)},
            )
        except UnlockError as exc:
            _logger.warning(
                "housekeeping failed", extra={"error": type(exc).__name__, "reason": exc.reason}
            )

    return Periodic("unlock-housekeeping", interval, tick)


def build_service(
    settings: Settings,
    *,
    audit_signer: NoteSigner | None = None,
    linkage_transport: Any = None,
    clock: Callable[[], dt.datetime] = utcnow,
    witnesses: bool = True,
) -> UnlockService:
    """Load keys, policy and databases and build the service (fails closed).

    ``witnesses=False`` is for a command that only appends (``optout``,
    ``review``): it never signs a checkpoint to publish, so it neither asks a
    witness nor needs a witness token; the serving process publishes them.
    """
    policy = load_policy(settings.policy_file)
    keyring = SealKeyring(settings.seal_key_dir)
    linkage_keys = [load_public_key(settings.linkage_public_key_file, "linkage attestation key")]
    if settings.linkage_previous_public_key_file is not None:
        linkage_keys.append(
            load_public_key(
                settings.linkage_previous_public_key_file, "previous linkage attestation key"
            )
        )
    issuer_key = load_public_key(settings.issuer_public_key_file, "token issuer key")
    token = load_linkage_token(settings.linkage_token_file)
    signer = audit_signer or load_audit_signer(settings.audit_key_file)
    tokens = TokenVerifier(
        _ed25519(bytes(issuer_key)),
        settings.token_issuer,
        settings.token_audience,
        max_lifetime=settings.max_token_lifetime,
        leeway=settings.clock_skew,
    )
    endpoints = _witness_endpoints(settings) if witnesses else []
    engine = open_engine(settings.database_url)
    try:
        audit = AuditLog.open(
            settings.audit_database_url,
            signer,
            batch_wait=settings.audit_batch_wait,
            witnesses=endpoints,
            witness_quorum=settings.audit_witness_quorum if witnesses else 0,
        )
    except (AuditLogError, ValueError) as exc:
        engine.dispose()
        raise UnlockError(f"cannot open the audit log: {exc}", "AUDIT_UNAVAILABLE") from exc
    linkage = LinkageClient(
        settings.linkage_url,
        token,
        timeout=settings.linkage_timeout,
        # Traced: the caller's trace continues into the linkage service (traceparent).
        transport=traced_transport(linkage_transport),
    )
    return UnlockService(
        engine=engine,
        audit=audit,
        policy=policy,
        keyring=keyring,
        linkage=linkage,
        linkage_keys=tuple(linkage_keys),
        tokens=tokens,
        request_window=settings.request_window,
        claim_lease=settings.claim_lease,
        clock=clock,
    )


def _witness_endpoints(settings: Settings) -> list[WitnessEndpoint]:
    """The audit log's witnesses, each with its bearer token from the environment."""
    endpoints = []
    for w in settings.audit_witnesses:
        token = os.environ.get(w.token_env, "").strip()
        if not token:
            raise ConfigError(f"audit witness {w.url}: no bearer token in ${w.token_env}")
        try:
            verifier = witness_verifier(w.vkey)
        except AuditLogError as exc:
            raise ConfigError(f"audit witness {w.url}: {exc}") from exc
        endpoints.append(WitnessEndpoint(w.url, verifier, token))
    return endpoints


def _ed25519(raw: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def close_service(service: UnlockService) -> None:
    """Release the service's databases and connections."""
    service.linkage.close()
    service.audit.close()
    service.engine.dispose()


def create_app(
    settings: Settings,
    *,
    service_factory: Callable[[Settings], UnlockService] | None = None,
) -> FastAPI:
    """The unlock service HTTP app; the lifespan loads everything and fails closed."""
    audit_app = (
        audit_log.create_app(audit_app_settings(settings, None))
        if settings.audit_token_file is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        audit_tokens = (
            load_audit_tokens(settings.audit_token_file)
            if settings.audit_token_file is not None
            else None
        )
        service = await run_in_threadpool(service_factory or build_service, settings)
        try:
            # Crash recovery before the first request: stale claims (requests
            # a killed process left mid-transition) and logged grants without
            # a row are settled, each abandoned one with an expiry entry.
            recovered = await run_in_threadpool(service.recover, True)
        except (AuditLogError, UnlockError):
            close_service(service)
            raise
        if recovered:
            _logger.warning("recovered requests at start-up", extra={"records": recovered})
        housekeeping = _housekeeping(service, settings.checkpoint_interval)
        housekeeping.start()
        app.state.settings = settings
        app.state.service = service
        if audit_app is not None:
            # The mounted audit app's lifespan does not run; it serves the
            # log this service writes, with read-only tokens.
            audit_app.state.settings = audit_app_settings(settings, service.policy)
            audit_app.state.tokens = audit_tokens
            audit_app.state.log = service.audit
        try:
            yield
        finally:
            housekeeping.stop()
            close_service(service)

    # No public schema and no CDN-backed /docs page: /openapi.json is a signed request.
    app = FastAPI(
        title="unlock-service",
        lifespan=lifespan,
        responses={code: {"model": ErrorAnswer} for code in _ERROR_STATUSES},
        **NO_PUBLIC_DOCS,
    )
    serve_openapi(app, authenticated)

    @app.exception_handler(UnlockError)
    async def package_error(request: Request, exc: UnlockError) -> JSONResponse:
        body = ErrorAnswer(
            detail=str(exc),
            reason=exc.reason,
            reason_text=reason_text(exc.reason),
            request_id=exc.request_id if isinstance(exc, Refused) else None,
            audit_index=exc.audit_index if isinstance(exc, Refused) else None,
        )
        if exc.status == 401:
            _logger.warning(
                "authentication refused", extra={"reason": exc.reason, "path": request.url.path}
            )
        elif exc.status >= 500:
            _logger.error("request failed", extra={"reason": exc.reason, "path": request.url.path})
        return JSONResponse(body.model_dump(mode="json"), status_code=exc.status)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """Liveness."""
        return Health()

    @app.post(
        "/unlocks",
        response_model=DecisionAnswer,
        responses={202: {"model": PendingAnswer, "description": "Awaiting approval"}},
    )
    def unlock(
        pro: Pro, service: ServiceDep, body: UnlockBody, response: Response
    ) -> ReleasedAnswer | PendingAnswer:
        """Ask for a family's identities: 200 released, 202 awaiting approval, 403/429 refused."""
        result = service.request_unlock(
            pro, body.family_id, body.purpose_code, body.justification, break_glass=body.break_glass
        )
        if isinstance(result, Pending):
            response.status_code = 202
        return result.to_model()

    @app.get("/unlocks", response_model=RequestPage)
    def own_requests(
        pro: Pro,
        service: ServiceDep,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[str | None, Query(pattern=r"^req_[0-9a-f]{16,64}$")] = None,
    ) -> RequestPage:
        """The caller's own requests, newest first; page on with ``before=<next_before>``."""
        return service.own_requests(pro, limit, before)

    @app.get("/purposes", response_model=PurposeList)
    def purposes(pro: Pro, service: ServiceDep) -> PurposeList:
        """The policy's purposes the caller's role may state (for a request form)."""
        return service.purposes_for(pro)

    @app.get("/approvals", response_model=ApprovalList)
    def approvals(pro: Pro, service: ServiceDep) -> ApprovalList:
        """The pending requests the caller may approve (policy decides; never their own)."""
        return service.approvals_for(pro)

    @app.get("/unlocks/{request_id}", response_model=RequestView)
    def request_state(pro: Pro, service: ServiceDep, request_id: RequestId) -> RequestView:
        """Where a request stands."""
        return service.get_request(pro, request_id)

    @app.post("/unlocks/{request_id}/approvals", response_model=ApprovalAnswer)
    def approve(
        pro: Pro, service: ServiceDep, request_id: RequestId, body: ApprovalBody
    ) -> ApprovalAnswer:
        """A second professional approves or declines a pending request."""
        return service.approve(pro, request_id, body.decision == "approve")

    @app.post("/unlocks/{request_id}/release", response_model=ReleasedAnswer)
    def release(pro: Pro, service: ServiceDep, request_id: RequestId) -> ReleasedAnswer:
        """Redeem a grant once: the identities sealed to the requester, with the receipt."""
        return service.release(pro, request_id).to_model()

    @app.get("/reviews", response_model=ReviewList)
    def reviews(
        pro: Pro, service: ServiceDep, status: Literal["open", "closed"] | None = "open"
    ) -> ReviewList:
        """Break-glass review tasks (IG; audited)."""
        return service.list_reviews(pro, status)

    @app.post("/reviews/{request_id}", response_model=ReviewClosed)
    def close_review(
        pro: Pro, service: ServiceDep, request_id: RequestId, body: ReviewBody
    ) -> ReviewClosed:
        """Close a break-glass review with an outcome (IG; audited)."""
        return service.close_review(pro, request_id, body.outcome, body.notes)

    @app.get("/professionals/{professional_id}/unlocks", response_model=RequestPage)
    def professional_unlocks(
        pro: Pro, service: ServiceDep, professional_id: ProfessionalId
    ) -> RequestPage:
        """Every request one professional made (IG; audited)."""
        return service.professional_unlocks(pro, professional_id)

    @app.post("/restrictions", response_model=FlagChange)
    def restrict(pro: Pro, service: ServiceDep, body: FlagBody) -> FlagChange:
        """Set a family's opt-out or restriction flag (IG; audited; effective at once)."""
        return service.set_restriction(pro, body.family_id, body.flag, body.note)

    @app.post("/restrictions/{family_id}/lift", response_model=FlagChange)
    def lift(pro: Pro, service: ServiceDep, family_id: FamilyIdPath, body: LiftBody) -> FlagChange:
        """Lift a family's flag (IG; audited)."""
        return service.set_restriction(pro, family_id, None, body.note)

    @app.post("/subject-access", response_model=SubjectAccessReport)
    def subject_access(pro: Pro, service: ServiceDep, body: SubjectQuery) -> SubjectAccessReport:
        """What is held about an encoded identity, with its identities sealed to the caller.

        IG officers only; audited before anything is returned.
        """
        return service.subject_access(pro, body)

    if audit_app is not None:
        app.mount("/audit", audit_app)
    # Spans for every request, continuing the caller's W3C traceparent (the
    # global providers: quiet until the serve command sets telemetry up).
    instrument_app(app, "unlock-service")
    # Outermost: the body cap applies before anything reads the body.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def audit_app_settings(settings: Settings, policy: Policy | None) -> audit_log.Settings:
    """The audit app's settings: its anomaly report's break-glass review deadline is
    the policy's (one deadline for the review task and the report); other
    thresholds are the defaults."""
    assert settings.audit_token_file is not None
    extra = (
        {} if policy is None else {"break_glass_review_days": policy.rules.break_glass.review_days}
    )
    return audit_log.Settings(
        db_url=settings.audit_database_url,
        key_file=settings.audit_key_file,
        token_file=settings.audit_token_file,
        **extra,
    )
