"""Configuration of the linkage service: settings, schemas, keys and bearer tokens.

Everything fails closed: a missing or group/world-accessible token or key file,
an empty token table, an unknown role, or a pinned schema fingerprint the
service has no schema for stops the service before it serves anything.
Settings come from a TOML or JSON file and ``LINKAGE_SERVICE_*`` environment
variables, never from the repository. Files are read only when a function here
is called, never at import time.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path

from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocols import (
    Caller,
    LinkageSchema,
    SecretFileError,
    TokenTable,
    check_private_file,
    default_schema,
    load_token_file,
    new_token,
    token_digest,
)
from service_common import load_service_settings

from ._errors import ConfigError
from ._ingest import DEFAULT_MAX_RECORDS, DEFAULT_MAX_UPLOAD_BYTES
from ._uploads import DEFAULT_AHEAD_WAIT, DEFAULT_MAX_CHUNK_BYTES
from .programme._restrictions import DEFAULT_RESTRICTIONS, RestrictionPolicy
from .programme._riskmodel import RiskModel, default_model, load_model
from .programme._ruleset import Ruleset, default_ruleset, load_ruleset

__all__ = [
    "FIXED_ROLES",
    "Caller",
    "Settings",
    "TokenTable",
    "agency_of",
    "hash_token",
    "load_attestation_key",
    "load_programme",
    "load_schemas",
    "load_settings",
    "load_tokens",
    "new_token",
    "valid_role",
]

FIXED_ROLES = ("analyst", "coordinator", "admin", "unlock_service")
_AGENCY_ROLE = re.compile(r"^agency:([a-z][a-z0-9_-]{1,39})$")
ENV_PREFIX = "LINKAGE_SERVICE_"


class Settings(BaseModel):
    """Settings of one linkage service instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///linkage.sqlite"
    token_file: Path
    # Fingerprints of the schemas extracts may be encoded with (more than one only
    # during a migration window); empty means the shipped default schema only.
    schema_fingerprints: tuple[str, ...] = ()
    schema_files: tuple[Path, ...] = ()
    # Caps on one push (413 naming the limit; nothing is stored from a refused push).
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1024)
    max_records_per_push: int = Field(default=DEFAULT_MAX_RECORDS, ge=1)
    # Every other request body (assessments, status changes, claims, subject queries).
    max_body_bytes: int = Field(default=1024**2, ge=1024)
    max_line_bytes: int = Field(default=64 * 1024, ge=1024)
    # Resumable uploads (/uploads): the largest chunk, the uploads one agency may
    # hold open at once, how long an idle one is kept before it is discarded, and
    # how long a chunk sent ahead of the upload's offset waits for the ones before.
    max_chunk_bytes: int = Field(default=DEFAULT_MAX_CHUNK_BYTES, ge=1024)
    max_upload_sessions: int = Field(default=4, ge=1, le=64)
    upload_idle_seconds: float = Field(default=3600.0, gt=0)
    upload_ahead_wait_seconds: float = Field(default=DEFAULT_AHEAD_WAIT, ge=0, le=300)
    staging_dir: Path | None = None
    # Worker processes checking a large upload chunk's lines beside the thread that
    # receives it (docs/linkage-service.md, "Fast ingest"); None: one fewer than the
    # machine's cores, at most 3. 0 checks every line on the receiving thread.
    verify_workers: int | None = Field(default=None, ge=0, le=64)
    attestation_key_file: Path | None = None
    # The programme ruleset and risk model: a shipped name or a path to a TOML file.
    ruleset: str = "troubled-families-phase2"
    risk_model: str = "family-complexity"
    # What each kind of opt-out / restriction flag stops (profiling, claims, release);
    # OPT_OUT and RESTRICTED need a rule and every kind must block release.
    restrictions: RestrictionPolicy = Field(default_factory=lambda: dict(DEFAULT_RESTRICTIONS))
    # Rows per keyset page of a bulk export (``/export/{kind}``): one short read each.
    export_page_size: int = Field(default=1000, ge=1, le=100_000)
    # Blocking and scoring as Dask tasks (docs/scale.md): "" links in this process,
    # "local" starts a LocalCluster of dask_workers processes, anything else is the
    # address of a running scheduler (tcp://host:8786). The links are the same.
    dask_scheduler: str = ""
    dask_workers: int = Field(default=2, ge=1, le=256)  # LocalCluster only
    # memory each LocalCluster worker may use (bytes, or "auto": RAM / workers);
    # workers of a remote cluster are bounded where they are started
    dask_memory_limit: str = "auto"
    dask_partitions: int = Field(default=0, ge=0, le=100_000)  # row ranges; 0: 2 per thread
    # Bits per person LSH band (EngineConfig.lsh_bits); None: the engine's default.
    # Unrelated records meet by chance about bands * records / 2**bits times each,
    # so beyond a few million records one more bit halves that work (docs/scale.md).
    lsh_bits: int | None = Field(default=None, ge=16, le=40)
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=1, le=65535)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a TOML/JSON file (optional) overridden by environment variables.

    Relative paths in the file are taken relative to the file's directory.
    """
    return load_service_settings(Settings, ENV_PREFIX, path, environ, ConfigError)


def load_schemas(settings: Settings) -> dict[str, LinkageSchema]:
    """Pinned fingerprint -> schema; ConfigError if a pinned fingerprint has no schema."""
    known = {default_schema().fingerprint(): default_schema()}
    for path in settings.schema_files:
        try:
            schema = LinkageSchema.model_validate_json(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read schema file {path}: {exc}") from exc
        except ValidationError as exc:
            raise ConfigError(f"schema file {path} is not a linkage schema: {exc}") from exc
        known[schema.fingerprint()] = schema
    pinned = settings.schema_fingerprints or (default_schema().fingerprint(),)
    out: dict[str, LinkageSchema] = {}
    for fp in pinned:
        if fp not in known:
            raise ConfigError(
                f"pinned schema fingerprint {fp} matches neither the default schema nor any "
                "schema file; give its JSON in schema_files"
            )
        out[fp] = known[fp]
    return out


def _check_private(path: Path, what: str) -> None:
    try:
        check_private_file(path, what)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc


def load_attestation_key(path: Path) -> SigningKey:
    """The service's Ed25519 attestation key: base64 of a 32-byte seed in a 0600 file."""
    _check_private(path, "attestation key file")
    try:
        text = path.read_text(encoding="utf-8").strip()
        seed = base64.b64decode(text, validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error) as exc:
        raise ConfigError(f"attestation key file {path} is not base64 text: {exc}") from exc
    if len(seed) != 32 or len(set(seed)) < 8:
        raise ConfigError(f"attestation key file {path} must hold a random 32-byte Ed25519 seed")
    return SigningKey(seed)


def load_programme(settings: Settings) -> tuple[Ruleset, RiskModel]:
    """The configured ruleset and risk model, checked against each other (fail closed)."""
    ruleset = (
        load_ruleset(Path(settings.ruleset))
        if settings.ruleset.endswith(".toml")
        else default_ruleset(settings.ruleset)
    )
    model = (
        load_model(Path(settings.risk_model))
        if settings.risk_model.endswith(".toml")
        else default_model(settings.risk_model)
    )
    model.check_against(ruleset)
    return ruleset, model


def valid_role(role: str) -> bool:
    """Whether ``role`` is one of :data:`FIXED_ROLES` or ``agency:<id>``."""
    return role in FIXED_ROLES or _AGENCY_ROLE.match(role) is not None


def agency_of(caller: Caller) -> str | None:
    """The agency a caller pushes for, or None if it is not an agency."""
    m = _AGENCY_ROLE.match(caller.role)
    return m.group(1) if m else None


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token: all the token file ever stores."""
    return token_digest(token).hex()


def load_tokens(path: Path) -> TokenTable:
    """The token table of ``path`` (see :func:`protocols.load_token_file`)."""
    try:
        return load_token_file(path, valid_role, f"one of {FIXED_ROLES} or agency:<agency id>")
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
