"""Configuration of the unlock service: settings and the keys and tokens it pins.

Everything fails closed: a missing, placeholder or group/world-accessible
secret file (the audit log key, the linkage bearer token, the issuer's private
key), a pinned public key that is not 32 bytes of base64, or settings that
name no policy file stop the service before it serves anything. Settings come
from a TOML or JSON file and ``UNLOCK_SERVICE_*`` environment variables, never
from the repository. Files are read only when a function here is called, never
at import time, and no function here logs or prints a secret.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import VerifyKey
from pydantic import BaseModel, ConfigDict, Field

from audit_log import AuditLogError, NoteSigner, WitnessSettings
from protocols import (
    SecretFileError,
    TokenTable,
    check_private_file,
    load_token_file,
    write_private_file,
)
from service_common import load_service_settings

from ._errors import ConfigError

__all__ = [
    "AUDIT_READ_ROLES",
    "ENV_PREFIX",
    "Settings",
    "load_audit_signer",
    "load_audit_tokens",
    "load_issuer_private_key",
    "load_linkage_token",
    "load_public_key",
    "load_settings",
    "write_secret",
]

ENV_PREFIX = "UNLOCK_SERVICE_"
# Roles of the bearer tokens for the mounted audit-log read endpoints. There is
# deliberately no "writer": only this service appends, in-process.
AUDIT_READ_ROLES = ("reader", "ig_officer")


class Settings(BaseModel):
    """Settings of one unlock service instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite:///unlock.sqlite"
    policy_file: Path
    seal_key_dir: Path
    # The audit log: its own database, its Ed25519 note key (0600 file), and
    # the token file for the read endpoints served under /audit (optional).
    audit_database_url: str = "sqlite:///unlock-audit.sqlite"
    audit_key_file: Path
    audit_token_file: Path | None = None
    audit_batch_wait: float = Field(default=0.0, ge=0)
    checkpoint_interval: float = Field(default=1.0, gt=0)
    # IG witnesses asked to cosign each checkpoint ([[audit_witnesses]] tables:
    # url, vkey (inline or a file), token_env naming the variable that holds
    # our bearer token for it). With witnesses a checkpoint, and so a receipt,
    # is published only once ``audit_witness_quorum`` (default: all) cosigned.
    audit_witnesses: tuple[WitnessSettings, ...] = ()
    audit_witness_quorum: int | None = Field(default=None, ge=0)
    # The linkage service: URL, our bearer token (0600 file) and its pinned
    # attestation public key (base64 of the 32 raw Ed25519 bytes). While the
    # linkage service's attestation key is rotated, the key being retired is
    # pinned too (``linkage_previous_public_key_file``), so attestations signed
    # before and after the linkage service switches are both accepted.
    linkage_url: str = Field(pattern=r"^https?://")
    linkage_token_file: Path
    linkage_public_key_file: Path
    linkage_previous_public_key_file: Path | None = None
    linkage_timeout: float = Field(default=10.0, gt=0)
    # Professionals' bearer tokens: EdDSA JWTs from this issuer for this audience.
    token_issuer: str = Field(default="unlock-service-local", min_length=1)
    token_audience: str = Field(default="unlock-service", min_length=1)
    issuer_public_key_file: Path
    # Only the local issuer (``unlock-service token issue``) reads this; the
    # server never needs it.
    issuer_key_file: Path | None = None
    max_token_lifetime: int = Field(default=600, ge=10, le=3600)
    clock_skew: int = Field(default=30, ge=0, le=300)
    # How old a request signature may be; nonces are remembered this long.
    request_window: int = Field(default=60, ge=5, le=600)
    # How long a request may stay claimed mid-transition (evaluating, deciding,
    # releasing, expiring) before recovery settles it from the audit log: longer
    # than the slowest transition (linkage timeout + receipt), short enough
    # that a crashed caller's grant is soon redeemable again.
    claim_lease: float = Field(default=120, ge=5, le=3600)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    host: str = "127.0.0.1"
    port: int = Field(default=8800, ge=1, le=65535)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a TOML/JSON file (optional) overridden by environment variables.

    Relative paths in the file are taken relative to the file's directory.
    """
    return load_service_settings(Settings, ENV_PREFIX, path, environ, ConfigError)


def _check_private(path: Path, what: str) -> None:
    try:
        check_private_file(path, what)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc


def _read_secret(path: Path, what: str) -> str:
    _check_private(path, what)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from exc
    if not text or "changeme" in text.lower() or "placeholder" in text.lower():
        raise ConfigError(f"{what} {path} is empty or a placeholder")
    return text


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 holding ``text``; refuse to overwrite."""
    try:
        write_private_file(path, text if text.endswith("\n") else text + "\n")
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc


def load_public_key(path: Path, what: str) -> VerifyKey:
    """A pinned Ed25519 public key: base64 of the 32 raw bytes in a (public) file."""
    try:
        raw = base64.b64decode(path.read_text(encoding="utf-8").strip(), validate=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    except binascii.Error as exc:
        raise ConfigError(f"{what} {path} is not base64: {exc}") from exc
    if len(raw) != 32:
        raise ConfigError(f"{what} {path} must hold 32 bytes of Ed25519 key, got {len(raw)}")
    return VerifyKey(raw)


def load_linkage_token(path: Path) -> str:
    """Our bearer token for the linkage service, from a 0600 file."""
    return _read_secret(path, "linkage token file")


def load_issuer_private_key(path: Path) -> Ed25519PrivateKey:
    """The local issuer's Ed25519 key: base64 of a 32-byte seed in a 0600 file."""
    text = _read_secret(path, "issuer key file")
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ConfigError(f"issuer key file {path} is not base64: {exc}") from exc
    if len(seed) != 32 or len(set(seed)) < 8:
        raise ConfigError(f"issuer key file {path} must hold a random 32-byte Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_audit_signer(path: Path) -> NoteSigner:
    """The audit log's note signing key (``PRIVATE+KEY+...``, as ``audit-log keygen`` writes)."""
    text = _read_secret(path, "audit log key file")
    try:
        return NoteSigner.from_skey(text)
    except AuditLogError as exc:
        raise ConfigError(f"audit log key file {path} is not a signer key: {exc}") from exc


def load_audit_tokens(path: Path) -> TokenTable:
    """Bearer tokens for the /audit read endpoints (roles ``reader`` and ``ig_officer``)."""
    try:
        return load_token_file(path, lambda r: r in AUDIT_READ_ROLES, f"one of {AUDIT_READ_ROLES}")
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
