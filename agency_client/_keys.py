"""Key files held by an agency: its signing key, the shared linkage secret, and
the unlock service's public sealing key.

Secrets are read only from files the caller names (or, for the linkage secret,
an environment variable), never from the repository. A secret file readable by
group or others is refused (fail closed), and so is a file that is too short or
still holds a placeholder. Nothing here ever logs or prints a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

import protocols
from protocols import (
    SealError,
    SealPublicKey,
    SecretFileError,
    check_private_file,
    key_id,
    write_private_file,
)

from ._errors import KeyFileError

AGENCY_KEY_FORMAT = "family-linkage/agency-key/v1"
AGENCY_PUBLIC_FORMAT = "family-linkage/agency-public-key/v1"
SECRET_FORMAT = "family-linkage/linkage-secret/v1"
SECRET_ENV = "FAMILY_LINKAGE_SECRET_FILE"
MIN_SECRET_BYTES = 32


def _b64d(value: object, path: Path, field: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: field {field!r} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise KeyFileError(f"{path}: field {field!r} is not valid base64") from exc
    if size is not None and len(raw) != size:
        raise KeyFileError(f"{path}: field {field!r} must decode to {size} bytes, got {len(raw)}")
    return raw


def _b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def check_private(path: Path) -> None:
    """Refuse a secret file that is missing, not a regular file, or readable by others."""
    try:
        check_private_file(path, "key file")
    except SecretFileError as exc:
        raise KeyFileError(str(exc)) from exc


def _read_json(path: Path, fmt: str, private: bool) -> dict[str, object]:
    if private:
        check_private(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"{path}: not a JSON key file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise KeyFileError(f"{path}: expected a key file of format {fmt!r}")
    return data


def write_private(path: Path, data: dict[str, object]) -> None:
    """Write a secret JSON file with mode 0600, created exclusively (never overwrites)."""
    try:
        write_private_file(path, json.dumps(data, indent=2) + "\n")
    except SecretFileError as exc:
        raise KeyFileError(str(exc)) from exc


def write_public(path: Path, data: dict[str, object]) -> None:
    """Write a public JSON file (mode 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --- agency signing key -----------------------------------------------------------


@dataclass(frozen=True)
class AgencyKey:
    """An agency's Ed25519 signing key and its record-reference key."""

    agency_id: str
    signing_key: SigningKey
    record_ref_key: bytes

    @property
    def public_key(self) -> bytes:
        """Raw 32-byte Ed25519 public key."""
        return bytes(self.signing_key.verify_key)

    @property
    def key_id(self) -> str:
        """Key id of the public key."""
        return key_id(self.public_key)


@dataclass(frozen=True)
class AgencyPublicKey:
    """What the linkage service registers for an agency."""

    agency_id: str
    public_key: bytes

    @property
    def key_id(self) -> str:
        """Key id of the public key."""
        return key_id(self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            VerifyKey(self.public_key).verify(message, signature)
        except (BadSignatureError, CryptoError, ValueError):
            return False
        return True


def generate_agency_key(agency_id: str, directory: Path) -> tuple[Path, Path]:
    """Create ``agency.key`` (secret, 0600) and ``agency.pub`` in ``directory``."""
    signing = SigningKey.generate()
    ref_key = os.urandom(32)
    private_path, public_path = directory / "agency.key", directory / "agency.pub"
    write_private(
        private_path,
        {
            "format": AGENCY_KEY_FORMAT,
            "agency_id": agency_id,
            "signing_seed": _b64e(bytes(signing)),
            "record_ref_key": _b64e(ref_key),
        },
    )
    pub = bytes(signing.verify_key)
    write_public(
        public_path,
        {
            "format": AGENCY_PUBLIC_FORMAT,
            "agency_id": agency_id,
            "public_key": _b64e(pub),
            "key_id": key_id(pub),
        },
    )
    return private_path, public_path


def load_agency_key(path: Path) -> AgencyKey:
    """Read an agency's secret key file."""
    data = _read_json(path, AGENCY_KEY_FORMAT, private=True)
    agency_id = data.get("agency_id")
    if not isinstance(agency_id, str) or not agency_id:
        raise KeyFileError(f"{path}: field 'agency_id' is missing")
    seed = _b64d(data.get("signing_seed"), path, "signing_seed", 32)
    ref_key = _b64d(data.get("record_ref_key"), path, "record_ref_key", 32)
    return AgencyKey(agency_id, SigningKey(seed), ref_key)


def load_agency_public_key(path: Path) -> AgencyPublicKey:
    """Read an agency's public key file."""
    data = _read_json(path, AGENCY_PUBLIC_FORMAT, private=False)
    agency_id = data.get("agency_id")
    if not isinstance(agency_id, str) or not agency_id:
        raise KeyFileError(f"{path}: field 'agency_id' is missing")
    return AgencyPublicKey(agency_id, _b64d(data.get("public_key"), path, "public_key", 32))


# --- linkage secret ---------------------------------------------------------------

CUSTODY_WARNING = """\
The linkage secret lets anyone who holds it test guessed identities against the
encodings. Give it ONLY to the partner agencies that encode extracts, over a
secure channel, and keep it out of the linkage service, the unlock service,
backups of either, tickets, e-mail and source control. If it leaks, generate a
new one, re-encode every agency's extract, and retire the old encodings."""


def generate_secret(path: Path) -> Path:
    """Create a new random linkage secret file (0600)."""
    write_private(path, {"format": SECRET_FORMAT, "secret": _b64e(os.urandom(MIN_SECRET_BYTES))})
    return path


def load_secret(path: Path | None) -> bytes:
    """Read the linkage secret from ``path``, or the file named by $FAMILY_LINKAGE_SECRET_FILE."""
    if path is None:
        env = os.environ.get(SECRET_ENV)
        if not env:
            raise KeyFileError(f"no linkage secret given: pass --secret or set {SECRET_ENV}")
        path = Path(env)
    data = _read_json(path, SECRET_FORMAT, private=True)
    secret = _b64d(data.get("secret"), path, "secret")
    if len(secret) < MIN_SECRET_BYTES:
        raise KeyFileError(f"{path}: secret must be at least {MIN_SECRET_BYTES} bytes")
    if len(set(secret)) < 8:
        raise KeyFileError(f"{path}: secret looks like a placeholder (too few distinct bytes)")
    return secret


# --- the unlock service's sealing key (format and files: protocols._seal) -------------


def generate_seal_keypair(directory: Path) -> tuple[Path, Path]:
    """Create the unlock service's ``seal.key`` (0600) and ``seal.pub``.

    Belongs to the unlock service's key ceremony; agencies and tests can make
    one without the unlock service installed.
    """
    try:
        return protocols.generate_seal_keypair(directory)
    except SealError as exc:
        raise KeyFileError(str(exc)) from exc


def load_seal_public_key(path: Path) -> SealPublicKey:
    """Read the unlock service's public sealing key."""
    try:
        return protocols.load_seal_public_key(path)
    except SealError as exc:
        raise KeyFileError(str(exc)) from exc


def load_seal_private_key(path: Path) -> PrivateKey:
    """Read the unlock service's private sealing key (the demo and tests only)."""
    try:
        return protocols.load_seal_private_key(path)
    except SealError as exc:
        raise KeyFileError(str(exc)) from exc
