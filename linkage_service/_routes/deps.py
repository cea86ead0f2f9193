"""The linkage service's dependencies: settings, service, programme state and callers.

Everything a route needs is created in the app's lifespan, kept on
``app.state`` and handed to routes through the ``Annotated`` aliases here;
nothing is created at import. The caller aliases authenticate the bearer token
and check its role (403 otherwise):

- ``AgencyCaller``: ``agency:<id>`` (pushes its own agency's extracts only);
- ``Reader``: ``analyst``, ``coordinator`` or ``admin``;
- ``Coordinator``: ``coordinator`` or ``admin``; ``Admin``: ``admin``;
- ``UnlockService``: the unlock service alone;
- ``Resolver`` and ``RestrictionReader``: readers and the unlock service;
- ``AnyCaller``: any authenticated caller.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from nacl.signing import SigningKey

from service_common import MAX_SQL_INT, bearer_caller, require_roles

from .._config import Caller, Settings, agency_of
from .._service import LinkageService
from .._uploads import Uploads
from ..programme._riskmodel import RiskModel
from ..programme._ruleset import Ruleset

__all__ = [
    "FAMILY_ID",
    "MAX_OFFSET",
    "MAX_PAGE",
    "WINDOW_ID",
    "Admin",
    "AgencyCaller",
    "AnyCaller",
    "ConfiguredRuleset",
    "Coordinator",
    "CycleId",
    "FamilyId",
    "ModelDep",
    "Offset",
    "Page",
    "Reader",
    "RecordId",
    "Resolver",
    "RestrictionReader",
    "ServiceDep",
    "SettingsDep",
    "SignerDep",
    "UnlockService",
    "UploadsDep",
    "WindowId",
    "get_attestation_key",
    "get_model",
    "get_ruleset",
    "get_service",
    "get_settings",
    "get_uploads",
    "require_agency",
    "who",
]

MAX_PAGE = 1000
MAX_OFFSET = 10_000_000  # far beyond any queue; bigger values are refused (422), not overflowed
FAMILY_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
WINDOW_ID = r"^[0-9]{4}-[A-Z][0-9]{1,2}$"  # a claim window label (YYYY-H1, YYYY-Q3 ...)


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> LinkageService:
    """The running linkage service."""
    service: LinkageService = request.app.state.service
    return service


def get_uploads(request: Request) -> Uploads:
    """The service's open resumable uploads."""
    uploads: Uploads = request.app.state.uploads
    return uploads


def get_ruleset(request: Request) -> Ruleset:
    """The configured ruleset (a switch recorded in the database may override it)."""
    ruleset: Ruleset = request.app.state.ruleset
    return ruleset


def get_model(request: Request) -> RiskModel:
    """The configured risk model."""
    model: RiskModel = request.app.state.model
    return model


def get_attestation_key(request: Request) -> SigningKey | None:
    """The attestation signing key, or None when none is configured (no attestations)."""
    key: SigningKey | None = request.app.state.attestation_key
    return key


def require_agency(request: Request) -> Caller:
    """A dependency that admits only agency callers (``agency:<id>``)."""
    caller = bearer_caller(request)
    if agency_of(caller) is None:
        raise HTTPException(403, f"role {caller.role!r} may not push extracts")
    return caller


def who(caller: Caller) -> str:
    """The actor a change is recorded under: ``role:label``, at most 80 characters."""
    return f"{caller.role}:{caller.label}"[:80]


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[LinkageService, Depends(get_service)]
UploadsDep = Annotated[Uploads, Depends(get_uploads)]
ConfiguredRuleset = Annotated[Ruleset, Depends(get_ruleset)]
ModelDep = Annotated[RiskModel, Depends(get_model)]
SignerDep = Annotated[SigningKey | None, Depends(get_attestation_key)]

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
AnyCaller = Annotated[Caller, Depends(bearer_caller)]
AgencyCaller = Annotated[Caller, Depends(require_agency)]

Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
WindowId = Annotated[str | None, Query(pattern=WINDOW_ID)]
# Ids are bounded so no value a database integer cannot hold reaches a query (422).
CycleId = Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)]
RecordId = Annotated[int, Path(ge=1, le=MAX_SQL_INT)]
FamilyId = Annotated[str, Path(pattern=FAMILY_ID)]
