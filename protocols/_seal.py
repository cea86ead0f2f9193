"""Sealed identities: the one definition of the format both parties use.

The agency client seals (:class:`IdentitySealer`), the unlock service opens
(:func:`open_sealed_identity`); both read and write the sealing key files
here. PyNaCl (libsodium) and the standard library only: importing this module
brings in no encoder, no C kernel and no synthetic data.

Format ``x25519-xsalsa20poly1305`` v1 (libsodium ``crypto_box`` via PyNaCl)::

    blob = 0x01 || ephemeral_public_key (32) || nonce (24) || ciphertext (pad + 16)

Each encoding process makes one ephemeral X25519 key pair per extract and
precomputes the box key with the unlock service's public key, so sealing a
record is one XSalsa20-Poly1305 encryption with a fresh random nonce (a sealed
box per record costs an X25519 scalar multiplication each, about 30x slower).
Nonces are drawn from the OS in batches of 1,024 (one system call per batch
rather than per record); each is used once.
The ephemeral private key never leaves memory. Every blob carries its own
ephemeral public key, so each record opens on its own.

The plaintext is the compact JSON of :class:`protocols.IdentityPayload`,
prefixed with its 2-byte length and zero-padded to the schema's
``identity_pad_bytes``, so every blob has the same length and ciphertext
length leaks nothing. The payload names its agency, extract and record ref, so
a blob moved to another record is detected when opened.

Key files (JSON): ``seal.key`` (0600, created exclusively, refused when group
or others can read it) holds the X25519 private key; ``seal.pub`` the public
key agencies seal to. Every failure is a :class:`SealError` naming the file or
blob problem; each package translates it at its boundary. This module is
compiled with mypyc (``setup.py``): after editing it, reinstall.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nacl.bindings import (
    crypto_box_beforenm,
    crypto_box_BOXZEROBYTES,
    crypto_box_easy_afternm,
    crypto_box_ZEROBYTES,
)
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from pydantic import ValidationError

from ._extract import IdentityPayload
from ._secrets import SecretFileError, check_private_file, key_id, write_private_file

SEAL_VERSION: Final = 1
SEAL_PUBLIC_FORMAT: Final = "family-linkage/seal-public-key/v1"
SEAL_PRIVATE_FORMAT: Final = "family-linkage/seal-private-key/v1"
_HEADER = 1 + 32 + Box.NONCE_SIZE
_NONCE_BATCH = 1024
_MAC_BYTES = crypto_box_ZEROBYTES - crypto_box_BOXZEROBYTES  # Poly1305 tag: 16


class SealError(ValueError):
    """A sealed identity or sealing key file cannot be used; the message says why."""


def sealed_length(pad_bytes: int) -> int:
    """Length in bytes of every sealed blob for a given padding size."""
    return _HEADER + pad_bytes + _MAC_BYTES


class IdentitySealer:
    """Seals identity payloads to the unlock service's public key."""

    def __init__(self, unlock_public_key: PublicKey, pad_bytes: int):
        ephemeral = PrivateKey.generate()
        # crypto_box_beforenm: the X25519 + HSalsa20 box key, computed once per extract
        self._key = crypto_box_beforenm(bytes(unlock_public_key), bytes(ephemeral))
        self._prefix = bytes([SEAL_VERSION]) + bytes(ephemeral.public_key)
        self._pad = pad_bytes
        self._nonces = b""
        self._next = 0

    def seal(self, payload: bytes) -> bytes:
        """Pad and encrypt one canonical identity payload."""
        if len(payload) > self._pad - 2:
            raise ValueError(
                f"identity is {len(payload)} bytes; the schema pads to {self._pad - 2} at most"
            )
        padded = len(payload).to_bytes(2, "big") + payload + bytes(self._pad - 2 - len(payload))
        at = self._next
        if at >= len(self._nonces):
            self._nonces, at = os.urandom(_NONCE_BATCH * Box.NONCE_SIZE), 0
        self._next = at + Box.NONCE_SIZE
        nonce = self._nonces[at : at + Box.NONCE_SIZE]
        return self._prefix + nonce + crypto_box_easy_afternm(padded, nonce, self._key)


def identity_bytes(payload: dict[str, object]) -> bytes:
    """Compact JSON of an identity payload dict (the fields of IdentityPayload)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def open_sealed_identity(
    blob_b64: str, private_key: PrivateKey, *, expect_record_ref: str | None = None
) -> IdentityPayload:
    """Open one sealed identity; raise SealError if it is not ours, tampered or misplaced."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except binascii.Error as exc:
        raise SealError("sealed_identity is not valid base64") from exc
    if len(blob) < _HEADER + _MAC_BYTES + 2 or blob[0] != SEAL_VERSION:
        raise SealError("sealed_identity has an unknown version or is truncated")
    eph = PublicKey(blob[1:33])
    try:
        padded = Box(private_key, eph).decrypt(blob[33:])
    except CryptoError as exc:
        raise SealError(
            "sealed_identity does not open with this key (wrong key or tampered)"
        ) from exc
    size = int.from_bytes(padded[:2], "big")
    if size > len(padded) - 2 or any(padded[2 + size :]):
        raise SealError("sealed_identity padding is malformed")
    try:
        payload = IdentityPayload.model_validate_json(padded[2 : 2 + size])
    except ValidationError as exc:
        raise SealError(f"sealed_identity payload is malformed: {exc.errors()[0]['msg']}") from exc
    if expect_record_ref is not None and payload.record_ref != expect_record_ref:
        raise SealError(
            f"sealed_identity belongs to record {payload.record_ref!r}, not {expect_record_ref!r}"
        )
    return payload


# --- the unlock service's sealing key files ------------------------------------------


@dataclass(frozen=True)
class SealPublicKey:
    """The unlock service's X25519 public key that identities are sealed to."""

    public_key: PublicKey

    @property
    def key_id(self) -> str:
        """Key id of the public key."""
        return key_id(bytes(self.public_key))


def _b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _read_key_file(path: Path, fmt: str, private: bool) -> bytes:
    """The 32-byte key held by a key file of format ``fmt``."""
    field = "private_key" if private else "public_key"
    try:
        if private:
            check_private_file(path, "key file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except SecretFileError as exc:
        raise SealError(str(exc)) from exc
    except OSError as exc:
        raise SealError(f"{path}: cannot read key file: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SealError(f"{path}: not a JSON key file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise SealError(f"{path}: expected a key file of format {fmt!r}")
    value = data.get(field)
    if not isinstance(value, str):
        raise SealError(f"{path}: field {field!r} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise SealError(f"{path}: field {field!r} is not valid base64") from exc
    if len(raw) != 32:
        raise SealError(f"{path}: field {field!r} must decode to 32 bytes, got {len(raw)}")
    return raw


def generate_seal_keypair(directory: Path) -> tuple[Path, Path]:
    """Create the unlock service's ``seal.key`` (0600, never overwritten) and ``seal.pub``."""
    sk = PrivateKey.generate()
    pub = bytes(sk.public_key)
    private_path, public_path = directory / "seal.key", directory / "seal.pub"
    private = {
        "format": SEAL_PRIVATE_FORMAT,
        "private_key": _b64e(bytes(sk)),
        "key_id": key_id(pub),
    }
    try:
        write_private_file(private_path, json.dumps(private, indent=2) + "\n")
    except SecretFileError as exc:
        raise SealError(str(exc)) from exc
    public = {"format": SEAL_PUBLIC_FORMAT, "public_key": _b64e(pub), "key_id": key_id(pub)}
    try:
        public_path.write_text(json.dumps(public, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SealError(f"cannot write {public_path}: {exc.strerror}") from exc
    return private_path, public_path


def load_seal_public_key(path: Path) -> SealPublicKey:
    """Read the unlock service's public sealing key."""
    return SealPublicKey(PublicKey(_read_key_file(path, SEAL_PUBLIC_FORMAT, private=False)))


def load_seal_private_key(path: Path) -> PrivateKey:
    """Read the unlock service's private sealing key (unlock service only)."""
    return PrivateKey(_read_key_file(path, SEAL_PRIVATE_FORMAT, private=True))
