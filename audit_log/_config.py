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
import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
        info = path.stat()
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path} has mode {stat.filemode(info.st_mode)}: it must not be readable or "
            f"writable by group or others (chmod 600 {path})"
        )


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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: role and the label from the token file."""

    role: Role
    label: str


class TokenTable:
    """Bearer tokens by SHA-256 hash; lookups compare every entry in constant time."""

    def __init__(self, entries: list[tuple[bytes, Caller]]) -> None:
        if not entries:
            raise ConfigError("the token table is empty: no caller could ever authenticate")
        self._entries = entries

    def digests(self) -> list[bytes]:
        """Every configured token hash (for the witness app, which takes hashes)."""
        return [digest for digest, _ in self._entries]

    def authenticate(self, authorization: str | None) -> Caller | None:
        """The caller a ``Bearer <token>`` header belongs to, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = hashlib.sha256(token.strip().encode("utf-8")).digest()
        found: Caller | None = None
        for digest, caller in self._entries:
            # Visit every entry so timing does not reveal which one matched.
            if hmac.compare_digest(presented, digest):
                found = caller
        return found


def load_tokens(path: Path) -> TokenTable:
    """Parse a token file: lines ``<sha256 hex of token> <role> [label]``, ``#`` comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read token file {path}: {exc}") from exc
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot stat token file {path}: {exc}") from exc
    if mode & 0o022:
        raise ConfigError(f"token file {path} is writable by group or others")
    entries: list[tuple[bytes, Caller]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (2, 3):
            raise ConfigError(f"{path}:{number}: expected '<sha256 hex> <role> [label]'")
        digest_hex, role = fields[0], fields[1]
        if len(digest_hex) != 64:
            raise ConfigError(f"{path}:{number}: token hash must be 64 hex digits")
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: token hash is not hex") from exc
        if role not in ROLES:
            raise ConfigError(f"{path}:{number}: unknown role {role!r}, expected one of {ROLES}")
        label = fields[2] if len(fields) == 3 else f"line {number}"
        entries.append((digest, Caller(role, label)))
    if not entries:
        raise ConfigError(f"token file {path} has no tokens: refusing to serve")
    return TokenTable(entries)
