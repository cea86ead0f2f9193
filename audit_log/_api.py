"""HTTP shell of the audit log: checkpoints, proofs, receipts, review queries, appends.

Routes parse, authorise, call one plain function (``AuditLog`` methods or
``_review``) and map package errors to status codes. The log, token table and
settings live on ``app.state``, created in the lifespan and handed to routes
through the ``Annotated`` dependencies below; nothing is created at import.

Every route authenticates a bearer token (SHA-256 hashes in the token file)
and checks its role: ``reader`` (witnesses, monitors) may fetch checkpoints,
proofs and receipts; ``ig_officer`` may also query entries and anomaly
reports; only ``writer`` (the unlock service) may append. No route updates or
deletes anything.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import AwareDatetime

from service_common import MAX_SQL_INT, NO_PUBLIC_DOCS, Periodic, require_roles, serve_openapi

from . import _store as store
from ._config import (
    Caller,
    Role,
    Settings,
    load_signer,
    load_tokens,
    witness_verifier,
)
from ._entries import Entry
from ._errors import AuditLogError, ProofError, WitnessError
from ._log import AuditLog, WitnessEndpoint
from ._note import NoteSigner
from ._review import anomaly_report, entry_record
from ._storage_errors import ConfigError, StorageError
from ._views import (
    AnomalyReport,
    Appended,
    ConsistencyProof,
    EntryItem,
    EntryPage,
    InclusionProof,
)

__all__ = ["create_app", "get_settings"]

MAX_PAGE = 1000
_logger = logging.getLogger("audit_log.api")


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_log(request: Request) -> AuditLog:
    """The open audit log."""
    log: AuditLog = request.app.state.log
    return log


def require(*roles: Role) -> Callable[[Request], Caller]:
    """A dependency that admits only callers holding one of ``roles``."""
    return require_roles(*roles)


SettingsDep = Annotated[Settings, Depends(get_settings)]
LogDep = Annotated[AuditLog, Depends(get_log)]
AnyReader = Annotated[Caller, Depends(require("reader", "ig_officer", "writer"))]
IgOfficer = Annotated[Caller, Depends(require("ig_officer"))]
# Leaf bytes are entry contents: the writer that appended them and IG officers
# may read them, a witness or monitor (reader) needs only hashes and proofs.
EntryReader = Annotated[Caller, Depends(require("ig_officer", "writer"))]
Writer = Annotated[Caller, Depends(require("writer"))]
# Every index and size is bounded so no value a database integer cannot hold
# reaches a query (422 naming the parameter, not a driver error).
Index = Annotated[int, Query(ge=0, le=MAX_SQL_INT)]
Size = Annotated[int, Query(ge=1, le=MAX_SQL_INT)]
LeafIndex = Annotated[int, Path(ge=0, le=MAX_SQL_INT)]


def _status(exc: AuditLogError) -> int:
    # Request bodies are validated by FastAPI (422); an EntryError here comes
    # from a stored leaf, so it is the server's fault, not the caller's.
    if isinstance(exc, ProofError):
        return 400
    if isinstance(exc, WitnessError | StorageError):
        return 503
    return 500


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


def _checkpointer(log: AuditLog, interval: float) -> Periodic:
    """Signs a checkpoint every ``interval`` seconds while the log grows."""

    def tick() -> bool:
        try:
            log.checkpoint()
        except WitnessError as exc:
            # Stays unpublished; the next round asks the witnesses again.
            _logger.warning("checkpoint not published: %s", exc)
        except AuditLogError:
            # Storage down or tamper found: stop signing rather than guess.
            _logger.exception("checkpointing stopped")
            return False
        return True

    return Periodic("audit-log-checkpointer", interval, tick)


def _open_log(
    settings: Settings, signer: NoteSigner | None, http_client: httpx.Client | None
) -> AuditLog:
    signer = signer or load_signer(settings.key_file, settings.key_env)
    witnesses = []
    for w in settings.witnesses:
        token = os.environ.get(w.token_env)
        if not token:
            raise ConfigError(f"witness {w.url}: no bearer token in ${w.token_env}")
        witnesses.append(WitnessEndpoint(w.url, witness_verifier(w.vkey), token))
    return AuditLog.open(
        settings.db_url,
        signer,
        witnesses=witnesses,
        witness_quorum=settings.witness_quorum,
        batch_size=settings.batch_size,
        batch_wait=settings.batch_wait,
        http_client=http_client,
    )


def create_app(
    settings: Settings,
    *,
    signer: NoteSigner | None = None,
    http_client: httpx.Client | None = None,
) -> FastAPI:
    """The audit log HTTP app; the lifespan opens the log and loads keys and tokens."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tokens = load_tokens(settings.token_file)
        settings.anomaly_config()  # an unknown time zone stops start-up
        log = _open_log(settings, signer, http_client)
        checkpointer = _checkpointer(log, settings.checkpoint_interval)
        checkpointer.start()
        app.state.settings = settings
        app.state.tokens = tokens
        app.state.log = log
        try:
            yield
        finally:
            checkpointer.stop()
            log.close()

    # No public schema and no CDN-backed /docs page: /openapi.json needs a token.
    app = FastAPI(title="audit-log", lifespan=lifespan, **NO_PUBLIC_DOCS)
    serve_openapi(app, require("reader", "ig_officer", "writer"))

    @app.exception_handler(AuditLogError)
    async def package_error(_request: Request, exc: AuditLogError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=_status(exc))

    @app.get("/checkpoint", response_class=PlainTextResponse)
    def checkpoint(_caller: AnyReader, log: LogDep) -> PlainTextResponse:
        """The latest published checkpoint note."""
        note = log.published_checkpoint()
        if note is None:
            raise HTTPException(503, "no checkpoint has been published yet")
        return PlainTextResponse(note)

    @app.get("/proof/inclusion", response_model=InclusionProof)
    def inclusion(
        _caller: AnyReader,
        log: LogDep,
        index: Index,
        size: Size,
    ) -> InclusionProof:
        """Inclusion proof of ``index`` in the tree of ``size``."""
        return InclusionProof(index=index, size=size, hashes=_b64(log.inclusion_proof(index, size)))

    @app.get("/proof/consistency", response_model=ConsistencyProof)
    def consistency(
        _caller: AnyReader,
        log: LogDep,
        old: Index,
        new: Index,
    ) -> ConsistencyProof:
        """Consistency proof from tree size ``old`` to ``new``."""
        return ConsistencyProof(old=old, new=new, hashes=_b64(log.consistency_proof(old, new)))

    @app.get("/receipts/{index}", response_class=PlainTextResponse)
    def receipt(_caller: AnyReader, log: LogDep, index: LeafIndex) -> PlainTextResponse:
        """The tlog-proof receipt of entry ``index``."""
        return PlainTextResponse(log.receipt(index))

    @app.get("/leaves/{index}", response_class=PlainTextResponse)
    def leaf(_caller: EntryReader, log: LogDep, index: LeafIndex) -> PlainTextResponse:
        """The exact leaf bytes of entry ``index`` (hash them to check a receipt)."""
        return PlainTextResponse(log.leaf(index).decode("utf-8"))

    # Fields left unset (an entry's proof when none was asked for, a receipt error
    # when there was none) are left out of the answer, as they always were.
    @app.get("/entries", response_model=EntryPage, response_model_exclude_unset=True)
    def entries(
        _caller: IgOfficer,
        log: LogDep,
        type: str | None = None,
        professional_id: str | None = None,
        family_id: str | None = None,
        purpose_code: str | None = None,
        decision: str | None = None,
        request_id: str | None = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        start: Index = 0,
        end: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
        proof_size: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> EntryPage:
        """Entries matching the filters with index in [start, end), one page at a time.

        With ``proof_size`` each entry carries its inclusion proof in the tree
        of that size (only entries below it are returned), so a client holding
        the signed checkpoint of that size can verify every entry.
        """
        if proof_size is not None:
            if proof_size > log.size:
                raise ProofError(f"proof_size {proof_size} is beyond the log of {log.size} entries")
            end = proof_size if end is None else min(end, proof_size)
        where = store.EntryFilter(
            type=type,
            professional_id=professional_id,
            family_id=family_id,
            purpose_code=purpose_code,
            decision=decision,
            request_id=request_id,
            since=since,
            until=until,
            start_index=start,
            end_index=end,
            limit=limit,
        )
        found = store.query_entries(log.engine, where)
        items = []
        for e in found:
            log.check_leaf(e.index, e.leaf_data)  # never serve a row changed since start-up
            item: dict[str, object] = {
                "leaf": e.leaf_data.decode("utf-8"),
                **entry_record(e.leaf_data),
            }
            if proof_size is not None:
                item["inclusion_proof"] = _b64(log.inclusion_proof(e.index, proof_size))
            items.append(EntryItem.model_validate(item))
        return EntryPage(
            entries=items, next_start=found[-1].index + 1 if len(found) == limit else None
        )

    @app.get("/reports/anomalies", response_model=AnomalyReport)
    def anomalies(
        _caller: IgOfficer,
        log: LogDep,
        config: SettingsDep,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        max_unlocks: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
    ) -> AnomalyReport:
        """Anomaly report over entries with event time in [since, until), with the
        granted unlocks per local day and professional."""
        limits = config.anomaly_config()
        if max_unlocks is not None:
            limits = dataclasses.replace(limits, max_unlocks_per_period=max_unlocks)
        found, daily = anomaly_report(log.verified_leaves(), limits, since, until)
        return AnomalyReport.model_validate(
            {
                "anomalies": [a.to_json() for a in found],
                "unlocks_per_day": [d.to_json() for d in daily],
                "timezone": limits.timezone,
                "limit": limits.max_unlocks_per_period,
                "period": limits.period,
            }
        )

    @app.post(
        "/entries", status_code=201, response_model=Appended, response_model_exclude_unset=True
    )
    def append(_caller: Writer, log: LogDep, entry: Entry) -> Appended:
        """Append one entry; answer once it is durable, with its receipt when published."""
        appended = log.append(entry)
        leaf = appended.leaf.decode("utf-8")
        try:
            return Appended(index=appended.index, leaf=leaf, receipt=log.receipt(appended.index))
        except WitnessError as exc:
            # The entry is durable either way; the receipt follows once cosigned.
            return Appended(index=appended.index, leaf=leaf, receipt=None, receipt_error=str(exc))

    return app
