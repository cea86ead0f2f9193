"""Configuration of the log service: settings, key files and bearer-token tables.

Everything here fails closed: a missing, unreadable, placeholder or
group/world-accessible key file, an empty token table or an unknown role stops
the service before it serves anything. Secrets come from files or the
environment, never from the repository or the command line. This module reads
files only when its functions are called, never at import time.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocols import (
    Caller,
    SecretFileError,
    TokenTable,
    check_private_file,
    load_token_file,
    write_private_file,
)

from ._checkpoint import CosignatureSigner, CosignatureVerifier
from ._errors import AuditLogError
from ._note import NoteSigner, NoteVerifier
from ._review import AnomalyConfig
from ._storage_errors import ConfigError

__all__ = [
    "ROLES",
    "Caller",
    "Settings",
    "cosigner_skey",
    "TokenTable",
    "WitnessSettings",
    "load_cosigner",
    "load_signer",
    "load_tokens",
    "log_verifier",
    "read_vkey",
    "witness_verifier",
    "write_secret",
]

Role = Literal["writer", "ig_officer", "reader"]
ROLES: tuple[Role, ...] = ("writer", "ig_officer", "reader")
_COSIGNATURE_ALG = 0x04


class WitnessSettings(BaseModel):
    """One witness the log must ask: URL, verifier key and where its token lives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://")
    vkey: str
    token_env: str = "AUDIT_LOG_WITNESS_TOKEN"


class Settings(BaseModel):
    """Settings of one log service instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db_url: str
    key_file: Path | None = None
    key_env: str = "AUDIT_LOG_KEY"
    token_file: Path
    witnesses: tuple[WitnessSettings, ...] = ()
    witness_quorum: int | None = None
    checkpoint_interval: float = Field(default=0.25, gt=0)
    batch_size: int = Field(default=256, ge=1)
    batch_wait: float = Field(default=0.0, ge=0)
    max_unlocks_per_period: int = Field(default=20, ge=0)
    anomaly_period: Literal["day", "week"] = "day"
    break_glass_review_days: int = Field(default=7, ge=0)
    timezone: str = "Europe/London"
    # Local hours [start, end) on working days counted as working hours.
    working_hours: tuple[int, int] = (8, 18)
    # Working days, Monday = 0 .. Sunday = 6.
    working_days: frozenset[int] = frozenset(range(5))

    @model_validator(mode="after")
    def _check_hours(self) -> Settings:
        start, end = self.working_hours
        if not 0 <= start < end <= 23:
            raise ValueError(
                f"working_hours {self.working_hours} must satisfy 0 <= start < end <= 23"
            )
        if not self.working_days or not self.working_days <= set(range(7)):
            raise ValueError(
                f"working_days {sorted(self.working_days)} must be a non-empty subset of 0..6 "
                "(Monday = 0)"
            )
        return self

    def anomaly_config(self) -> AnomalyConfig:
        """The anomaly-report thresholds; ConfigError if the time zone is unknown."""
        config = AnomalyConfig(
            max_unlocks_per_period=self.max_unlocks_per_period,
            period=self.anomaly_period,
            working_start=time(self.working_hours[0]),
            working_end=time(self.working_hours[1]),
            working_days=self.working_days,
            timezone=self.timezone,
            break_glass_review_days=self.break_glass_review_days,
        )
        config.zone()  # fail at start-up, not on the first report
        return config


def _check_private(path: Path, what: str) -> None:
    try:
        check_private_file(path, what)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc


def _read_secret(path: Path | None, env: str, environ: Mapping[str, str], what: str) -> str:
    if path is not None:
        _check_private(path, what)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{what} {path} cannot be read: {exc}") from exc
        source = str(path)
    else:
        text = environ.get(env, "").strip()
        source = f"${env}"
        if not text:
            raise ConfigError(f"no {what}: give a key file or set {env}")
    if not text or "changeme" in text.lower() or "placeholder" in text.lower():
        raise ConfigError(f"{what} from {source} is empty or a placeholder")
    return text


def load_signer(
    path: Path | None, env: str = "AUDIT_LOG_KEY", environ: Mapping[str, str] | None = None
) -> NoteSigner:
    """The log's signing key from a private file or an environment variable."""
    text = _read_secret(path, env, os.environ if environ is None else environ, "log key")
    try:
        return NoteSigner.from_skey(text)
    except AuditLogError as exc:
        raise ConfigError(f"log key from {path or '$' + env} is not a signer key: {exc}") from exc


def cosigner_skey(signer: CosignatureSigner, seed: bytes) -> str:
    """A witness key in ``PRIVATE+KEY+name+hex(id)+base64(0x04 || seed)`` form."""
    material = base64.b64encode(bytes([_COSIGNATURE_ALG]) + seed).decode("ascii")
    return f"PRIVATE+KEY+{signer.name}+{signer.key_id.hex()}+{material}"


def load_cosigner(
    path: Path | None, env: str = "AUDIT_LOG_WITNESS_KEY", environ: Mapping[str, str] | None = None
) -> CosignatureSigner:
    """A witness's cosigning key from a private file or an environment variable."""
    text = _read_secret(path, env, os.environ if environ is None else environ, "witness key")
    prefix = "PRIVATE+KEY+"
    parts = text[len(prefix) :].split("+", 2) if text.startswith(prefix) else []
    if len(parts) != 3:
        raise ConfigError("witness key must be 'PRIVATE+KEY+<name>+<hex id>+<base64 key>'")
    name, kid_hex, material_b64 = parts
    try:
        material = base64.b64decode(material_b64, validate=True)
        kid = bytes.fromhex(kid_hex)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"witness key {name!r} is not valid hex/base64: {exc}") from exc
    if len(material) != 33 or material[0] != _COSIGNATURE_ALG:
        raise ConfigError(f"witness key {name!r} is not a cosignature/v1 (0x04) 32-byte seed")
    try:
        signer = CosignatureSigner.from_seed(name, material[1:])
    except AuditLogError as exc:
        raise ConfigError(f"witness key {name!r}: {exc}") from exc
    if signer.key_id != kid:
        raise ConfigError(f"witness key {name!r}: key ID {kid_hex} does not match the key")
    return signer


def read_vkey(value: str) -> str:
    """A verifier key given inline (``name+id+key``) or as the path of a file holding one."""
    if value.count("+") >= 2 and not Path(value).exists():
        return value.strip()
    try:
        return Path(value).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read verifier key file {value}: {exc}") from exc


def log_verifier(value: str) -> NoteVerifier:
    """A log verifier from an inline vkey or a vkey file."""
    try:
        return NoteVerifier.from_vkey(read_vkey(value))
    except AuditLogError as exc:
        raise ConfigError(f"log verifier key {value!r} is invalid: {exc}") from exc


def witness_verifier(value: str) -> CosignatureVerifier:
    """A witness cosignature verifier from an inline vkey or a vkey file."""
    try:
        return CosignatureVerifier.from_vkey(read_vkey(value))
    except AuditLogError as exc:
        raise ConfigError(f"witness verifier key {value!r} is invalid: {exc}") from exc


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 holding ``text``; refuse to overwrite."""
    try:
        write_private_file(path, text if text.endswith("\n") else text + "\n")
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc


def load_tokens(path: Path) -> TokenTable:
    """The token table of ``path`` (see :func:`protocols.load_token_file`)."""
    try:
        return load_token_file(path, lambda role: role in ROLES, f"one of {ROLES}")
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
