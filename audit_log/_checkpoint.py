"""C2SP checkpoints, Ed25519 cosignatures, tlog-proofs and add-checkpoint bodies.

This module owns the text formats layered on signed notes:
c2sp.org/tlog-checkpoint (the signed tree head), c2sp.org/tlog-cosignature
``cosignature/v1`` (a witness's timestamped Ed25519 signature, type 0x04),
c2sp.org/tlog-proof (an offline inclusion proof bundled with its checkpoint)
and the request body of c2sp.org/tlog-witness ``add-checkpoint``.

Parsers here are strict and raise ``CheckpointError`` naming the line that was
wrong. This module must never do I/O, never keep state, and never return a
checkpoint whose signature it has not verified from ``open_checkpoint`` or
``verify_tlog_proof``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_log._errors import CheckpointError, NoteError
from audit_log._merkle import HASH_SIZE, leaf_hash, verify_inclusion
from audit_log._note import (
    Note,
    NoteSigner,
    NoteVerifier,
    b64decode_strict,
    check_key_name,
    format_signature_line,
    format_vkey,
    key_id,
    load_ed25519_vkey,
    open_note,
    parse_signature_line,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "MAX_CONSISTENCY_LINES",
    "TLOG_PROOF_HEADER",
    "AddCheckpointRequest",
    "Checkpoint",
    "CosignatureSigner",
    "CosignatureVerifier",
    "TlogProof",
    "cosignature_message",
    "format_add_checkpoint",
    "format_tlog_proof",
    "open_checkpoint",
    "parse_add_checkpoint",
    "parse_tlog_proof",
    "sign_checkpoint",
    "verify_tlog_proof",
]

ALG_COSIGNATURE_V1 = 0x04
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
# tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
MAX_CONSISTENCY_LINES = 63
# Sizes and timestamps are u64 on the wire but must fit a signed 64-bit
# integer in the specs and in the databases we store them in.
_MAX_U63 = 2**63 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)


def _parse_decimal(value: str, what: str) -> int:
    """Parse an ASCII decimal without leading zeros, at most 2**63 - 1."""
    if not _DECIMAL.fullmatch(value):
        raise CheckpointError(f"{what} {value!r} is not a decimal without leading zeros")
    number = int(value)
    if number > _MAX_U63:
        raise CheckpointError(f"{what} {value} exceeds 2**63 - 1")
    return number


def _parse_hash(value: str, what: str) -> bytes:
    """Parse one canonical base64 SHA-256 hash."""
    try:
        raw = b64decode_strict(value, what)
    except NoteError as exc:
        raise CheckpointError(str(exc)) from exc
    if len(raw) != HASH_SIZE:
        raise CheckpointError(f"{what} must decode to {HASH_SIZE} bytes, got {len(raw)}")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint note body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError(f"checkpoint origin {self.origin!r} must be one non-empty line")
        if not 0 <= self.size <= _MAX_U63:
            raise CheckpointError(f"checkpoint size {self.size} out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash must be {HASH_SIZE} bytes, got {len(self.root_hash)}"
            )
        for i, ext in enumerate(self.extensions):
            if not ext or "\n" in ext:
                raise CheckpointError(f"checkpoint extension {i} must be one non-empty line")

    def to_text(self) -> str:
        """Return the note text: origin, size, base64 root, extensions, each newline-ended."""
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly; raise CheckpointError naming the line."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(f"checkpoint has {len(lines)} lines, need at least 3")
        for number, line in enumerate(lines, start=1):
            if not line:
                raise CheckpointError(f"checkpoint line {number} is empty")
        origin, size_line, root_line, *extensions = lines
        size = _parse_decimal(size_line, "checkpoint line 2 (size)")
        root = _parse_hash(root_line, "checkpoint line 3 (root hash)")
        return cls(origin=origin, size=size, root_hash=root, extensions=tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """Return the checkpoint signed as a note by the log's key."""
    if signer.name != cp.origin:
        # The spec says SHOULD; we make it MUST so open_checkpoint can insist.
        raise CheckpointError(
            f"log key name {signer.name!r} does not match checkpoint origin {cp.origin!r}"
        )
    return signer.sign(cp.to_text())


def open_checkpoint(note: str, log_verifier: NoteVerifier) -> tuple[Checkpoint, Note]:
    """Verify a checkpoint note with the log's key and parse its text."""
    opened = open_note(note, [log_verifier])
    if log_verifier.name not in opened.verified_by:
        raise NoteError(f"checkpoint is not signed by log key {log_verifier.name!r}")
    cp = Checkpoint.from_text(opened.text)
    if cp.origin != log_verifier.name:
        raise CheckpointError(
            f"checkpoint origin {cp.origin!r} does not match log key name {log_verifier.name!r}"
        )
    return cp, opened


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """Return the cosignature/v1 signed message for a checkpoint text and time."""
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def _check_timestamp(timestamp: int) -> None:
    if not 0 <= timestamp <= _MAX_U63:
        raise CheckpointError(f"cosignature timestamp {timestamp} out of range 0..2**63-1")


class CosignatureSigner:
    """A witness's Ed25519 cosignature/v1 key (signature type 0x04)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self._name = name
        self._key = private_key
        self._key_id = key_id(name, bytes([ALG_COSIGNATURE_V1]) + _raw(private_key.public_key()))

    @classmethod
    def generate(cls, name: str) -> CosignatureSigner:
        """Return a cosigner with a fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> CosignatureSigner:
        """Return the cosigner for a stored 32-byte Ed25519 seed."""
        if len(seed) != 32:
            raise CheckpointError(f"Ed25519 seed for {name!r} must be 32 bytes, got {len(seed)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def name(self) -> str:
        """The cosigner's key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID (computed with type byte 0x04)."""
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key text with signature type 0x04."""
        return format_vkey(self._name, self._key_id, ALG_COSIGNATURE_V1, self._key.public_key())

    def verifier(self) -> CosignatureVerifier:
        """Return the verifier for this cosigner's public key."""
        return CosignatureVerifier.from_vkey(self.vkey)

    def cosign(self, checkpoint_text: str, timestamp: int) -> str:
        """Return one note signature line (with newline) cosigning ``checkpoint_text``."""
        Checkpoint.from_text(checkpoint_text)
        _check_timestamp(timestamp)
        sig = self._key.sign(cosignature_message(checkpoint_text, timestamp))
        return format_signature_line(self._name, self._key_id, timestamp.to_bytes(8, "big") + sig)


class CosignatureVerifier:
    """Verifies cosignature/v1 lines; also usable as a verifier for ``open_note``."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        check_key_name(name)
        self._name = name
        self._key = public_key
        self._key_id = key_id(name, bytes([ALG_COSIGNATURE_V1]) + _raw(public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``name+hex(id)+base64(0x04 || pubkey)``, checking the key ID."""
        try:
            name, _, public_key = load_ed25519_vkey(vkey, ALG_COSIGNATURE_V1)
        except NoteError as exc:
            raise CheckpointError(f"bad cosigner verifier key: {exc}") from exc
        return cls(name, public_key)

    @property
    def name(self) -> str:
        """The cosigner's key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key text."""
        return format_vkey(self._name, self._key_id, ALG_COSIGNATURE_V1, self._key)

    def verify(self, text: bytes, sig: bytes) -> bool:
        """Return whether ``sig`` (timestamp || Ed25519 sig) cosigns note ``text``."""
        if len(sig) != 8 + 64:
            return False
        timestamp = int.from_bytes(sig[:8], "big")
        if timestamp > _MAX_U63:
            return False
        message = b"cosignature/v1\ntime %d\n" % timestamp + text
        try:
            self._key.verify(sig[8:], message)
        except InvalidSignature:
            return False
        return True

    def verify_line(self, checkpoint_text: str, line: str) -> int:
        """Check one cosignature line over ``checkpoint_text``; return its timestamp."""
        try:
            parsed = parse_signature_line(line, "cosignature line")
        except NoteError as exc:
            raise CheckpointError(str(exc)) from exc
        if parsed.name != self._name or parsed.key_id != self._key_id:
            raise CheckpointError(
                f"cosignature is from {parsed.name!r} (ID {parsed.key_id.hex()}), expected "
                f"{self._name!r} (ID {self._key_id.hex()})"
            )
        if len(parsed.sig) != 8 + 64:
            raise CheckpointError(
                f"cosignature from {self._name!r} is {len(parsed.sig)} bytes, expected 72"
            )
        timestamp = int.from_bytes(parsed.sig[:8], "big")
        _check_timestamp(timestamp)
        if not self.verify(checkpoint_text.encode(), parsed.sig):
            raise CheckpointError(
                f"cosignature from {self._name!r} at time {timestamp} does not verify"
            )
        return timestamp


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class TlogProof:
    """A parsed c2sp.org/tlog-proof: entry index, inclusion hashes, checkpoint note, extra."""

    index: int
    hashes: list[bytes]
    checkpoint_note: str
    extra: bytes | None = None


def format_tlog_proof(
    index: int, proof: Sequence[bytes], checkpoint_note: str, extra: bytes | None = None
) -> str:
    """Return the tlog-proof text for an entry index, its inclusion proof and checkpoint."""
    if not 0 <= index <= _MAX_U63:
        raise CheckpointError(f"tlog-proof index {index} out of range")
    lines = [TLOG_PROOF_HEADER]
    if extra is not None:
        lines.append(f"extra {_b64(extra)}")
    lines.append(f"index {index}")
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise CheckpointError(f"inclusion proof hash {i} must be {HASH_SIZE} bytes")
        lines.append(_b64(h))
    return "".join(line + "\n" for line in lines) + "\n" + checkpoint_note


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse tlog-proof text strictly (signatures are not checked here)."""
    header, sep, rest = text.partition("\n\n")
    if not sep:
        raise CheckpointError("tlog-proof has no empty line before the checkpoint")
    lines = header.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise CheckpointError(f"tlog-proof line 1 is {lines[0]!r}, expected {TLOG_PROOF_HEADER!r}")
    pos = 1
    extra: bytes | None = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        try:
            extra = b64decode_strict(lines[pos][len("extra ") :], "tlog-proof line 2 (extra)")
        except NoteError as exc:
            raise CheckpointError(str(exc)) from exc
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index "):
        raise CheckpointError(f"tlog-proof line {pos + 1} must be 'index <n>'")
    index = _parse_decimal(lines[pos][len("index ") :], f"tlog-proof line {pos + 1} (index)")
    hashes = [
        _parse_hash(line, f"tlog-proof line {n} (proof hash)")
        for n, line in enumerate(lines[pos + 1 :], start=pos + 2)
    ]
    if not rest:
        raise CheckpointError("tlog-proof has no checkpoint after the empty line")
    return TlogProof(index=index, hashes=hashes, checkpoint_note=rest, extra=extra)


def verify_tlog_proof(text: str, entry: bytes, log_verifier: NoteVerifier) -> Checkpoint:
    """Verify a tlog-proof for ``entry``: checkpoint signature, then inclusion; return it."""
    proof = parse_tlog_proof(text)
    cp, _ = open_checkpoint(proof.checkpoint_note, log_verifier)
    verify_inclusion(leaf_hash(entry), proof.index, cp.size, proof.hashes, cp.root_hash)
    return cp


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A parsed tlog-witness add-checkpoint body (checkpoint not yet verified)."""

    old_size: int
    consistency_proof: list[bytes]
    checkpoint_note: str


def format_add_checkpoint(
    old_size: int, consistency_proof: Sequence[bytes], checkpoint_note: str
) -> str:
    """Return an add-checkpoint request body."""
    if not 0 <= old_size <= _MAX_U63:
        raise CheckpointError(f"old size {old_size} out of range")
    if len(consistency_proof) > MAX_CONSISTENCY_LINES:
        raise CheckpointError(
            f"consistency proof has {len(consistency_proof)} hashes, limit {MAX_CONSISTENCY_LINES}"
        )
    lines = [f"old {old_size}", *(_b64(h) for h in consistency_proof)]
    return "".join(line + "\n" for line in lines) + "\n" + checkpoint_note


def parse_add_checkpoint(body: str) -> AddCheckpointRequest:
    """Parse an add-checkpoint body strictly; raise CheckpointError naming the line."""
    header, sep, note = body.partition("\n\n")
    if not sep:
        raise CheckpointError("add-checkpoint body has no empty line before the checkpoint")
    lines = header.split("\n")
    if not lines[0].startswith("old "):
        raise CheckpointError(f"add-checkpoint line 1 must be 'old <size>', got {lines[0]!r}")
    old_size = _parse_decimal(lines[0][len("old ") :], "add-checkpoint line 1 (old size)")
    if len(lines) - 1 > MAX_CONSISTENCY_LINES:
        raise CheckpointError(
            f"add-checkpoint has {len(lines) - 1} proof lines, limit {MAX_CONSISTENCY_LINES}"
        )
    proof = [
        _parse_hash(line, f"add-checkpoint line {n} (proof hash)")
        for n, line in enumerate(lines[1:], start=2)
    ]
    if not note:
        raise CheckpointError("add-checkpoint body has no checkpoint after the empty line")
    return AddCheckpointRequest(old_size=old_size, consistency_proof=proof, checkpoint_note=note)
