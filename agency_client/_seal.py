"""Sealed identities: the only place a plaintext identity is put into an extract.

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
"""

from __future__ import annotations

import base64
import binascii
import json
import os

from nacl.bindings import (
    crypto_box_beforenm,
    crypto_box_BOXZEROBYTES,
    crypto_box_easy_afternm,
    crypto_box_ZEROBYTES,
)
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey
from pydantic import ValidationError

from protocols import IdentityPayload

from ._errors import ExtractError

SEAL_VERSION = 1
_HEADER = 1 + 32 + Box.NONCE_SIZE
_NONCE_BATCH = 1024
_MAC_BYTES = crypto_box_ZEROBYTES - crypto_box_BOXZEROBYTES  # Poly1305 tag: 16


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
    """Open one sealed identity; raise ExtractError if it is not ours, tampered or misplaced."""
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except binascii.Error as exc:
        raise ExtractError("sealed_identity is not valid base64") from exc
    if len(blob) < _HEADER + _MAC_BYTES + 2 or blob[0] != SEAL_VERSION:
        raise ExtractError("sealed_identity has an unknown version or is truncated")
    eph = PublicKey(blob[1:33])
    try:
        padded = Box(private_key, eph).decrypt(blob[33:])
    except CryptoError as exc:
        raise ExtractError(
            "sealed_identity does not open with this key (wrong key or tampered)"
        ) from exc
    size = int.from_bytes(padded[:2], "big")
    if size > len(padded) - 2 or any(padded[2 + size :]):
        raise ExtractError("sealed_identity padding is malformed")
    try:
        payload = IdentityPayload.model_validate_json(padded[2 : 2 + size])
    except ValidationError as exc:
        raise ExtractError(
            f"sealed_identity payload is malformed: {exc.errors()[0]['msg']}"
        ) from exc
    if expect_record_ref is not None and payload.record_ref != expect_record_ref:
        raise ExtractError(
            f"sealed_identity belongs to record {payload.record_ref!r}, not {expect_record_ref!r}"
        )
    return payload
