"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

This module owns the note wire format: key names, key IDs, verifier keys
(``vkey``), signing a text into a note, opening a note against a set of trusted
verifiers, and merging extra signature lines (cosignatures) into a note.

It must never implement cryptography itself (Ed25519 comes from
``cryptography``), never trust note text that no known key verified, and never
silently accept a note in which a known key's signature fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from audit_log._errors import NoteError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "Verifier",
    "add_signatures",
    "b64decode_strict",
    "check_key_name",
    "check_note_text",
    "format_signature_line",
    "format_vkey",
    "key_id",
    "load_ed25519_vkey",
    "open_note",
    "parse_signature_line",
]

ALG_ED25519 = 0x01
# The spec requires accepting at least 16; 100 leaves room for many witnesses
# while bounding the work an attacker can make us do per note.
MAX_SIGNATURES = 100
_SIG_PREFIX = "\u2014 "  # em dash, space
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-f]{8}", re.ASCII)


def b64decode_strict(value: str, what: str) -> bytes:
    """Decode canonical standard base64, raising NoteError naming ``what`` otherwise."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not valid base64: {value!r}") from exc
    # Non-canonical encodings (stray low bits before '=') decode to the same
    # bytes; refusing them keeps one byte string per encoding.
    if base64.b64encode(raw).decode("ascii") != value:
        raise NoteError(f"{what} is not canonical base64: {value!r}")
    return raw


def check_key_name(name: str) -> None:
    """Raise NoteError unless ``name`` is a valid note key name."""
    if not name:
        raise NoteError("key name is empty")
    if "+" in name or any(ch.isspace() for ch in name) or _CONTROL.search(name):
        raise NoteError(f"key name {name!r} contains a space, '+' or control character")


def key_id(name: str, alg_and_pubkey: bytes) -> bytes:
    """Return the 4-byte key ID SHA-256(name || 0x0A || alg || key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + alg_and_pubkey).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _parse_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    """Split a vkey into (name, key ID, alg || key material)."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"verifier key {vkey!r} must have three '+'-separated parts")
    name, id_hex, key_b64 = parts
    check_key_name(name)
    if not _HEX8.fullmatch(id_hex):
        raise NoteError(f"verifier key {name!r}: key ID {id_hex!r} is not 8 lowercase hex digits")
    material = b64decode_strict(key_b64, f"verifier key {name!r} public key")
    if not material:
        raise NoteError(f"verifier key {name!r} has no key material")
    return name, bytes.fromhex(id_hex), material


def load_ed25519_vkey(vkey: str, alg: int) -> tuple[str, bytes, Ed25519PublicKey]:
    """Parse a vkey whose key material is ``alg`` || 32-byte Ed25519 key; check its ID."""
    name, kid, material = _parse_vkey(vkey)
    if material[0] != alg:
        raise NoteError(
            f"verifier key {name!r}: signature type 0x{material[0]:02x}, expected 0x{alg:02x}"
        )
    if len(material) != 33:
        raise NoteError(
            f"verifier key {name!r}: Ed25519 key must be 32 bytes, got {len(material) - 1}"
        )
    expected = key_id(name, material)
    if kid != expected:
        raise NoteError(
            f"verifier key {name!r}: key ID {kid.hex()} does not match key, expected "
            f"{expected.hex()}"
        )
    return name, kid, Ed25519PublicKey.from_public_bytes(material[1:])


def format_vkey(name: str, kid: bytes, alg: int, public_key: Ed25519PublicKey) -> str:
    """Return the vkey text ``name+hex(id)+base64(alg || key)``."""
    material = bytes([alg]) + _raw_public(public_key)
    return f"{name}+{kid.hex()}+{base64.b64encode(material).decode('ascii')}"


def check_note_text(text: str) -> None:
    """Raise NoteError unless ``text`` may be the text of a note."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    match = _CONTROL.search(text)
    if match:
        line = text.count("\n", 0, match.start()) + 1
        raise NoteError(f"note text line {line} contains control character {match.group()!r}")


def format_signature_line(name: str, kid: bytes, signature: bytes) -> str:
    """Return ``— name base64(key ID || signature)`` with its newline."""
    return f"{_SIG_PREFIX}{name} {base64.b64encode(kid + signature).decode('ascii')}\n"


class Verifier(Protocol):
    """What open_note needs from a trusted key: its name, ID and a check."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, sig: bytes) -> bool:
        """Return whether ``sig`` (without the key ID) signs ``text``."""
        ...


class NoteSigner:
    """An Ed25519 note signing key with its key name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self._name = name
        self._key = private_key
        self._key_id = key_id(name, bytes([ALG_ED25519]) + _raw_public(private_key.public_key()))

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """Return a signer with a fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        """Return the signer for a stored 32-byte Ed25519 seed."""
        if len(seed) != 32:
            raise NoteError(f"Ed25519 seed for {name!r} must be 32 bytes, got {len(seed)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Return the signer for ``PRIVATE+KEY+name+hex(id)+base64(0x01 || seed)``."""
        prefix = "PRIVATE+KEY+"
        if not skey.startswith(prefix):
            raise NoteError("signer key must start with 'PRIVATE+KEY+'")
        name, kid, material = _parse_vkey(skey.strip()[len(prefix) :])
        if material[0] != ALG_ED25519 or len(material) != 33:
            raise NoteError(f"signer key {name!r} is not an Ed25519 (0x01) 32-byte seed")
        signer = cls.from_seed(name, material[1:])
        if signer.key_id != kid:
            raise NoteError(f"signer key {name!r}: key ID {kid.hex()} does not match the key")
        return signer

    @property
    def name(self) -> str:
        """The key name used in signature lines."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return self._key_id

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed, for storing the key (keep it secret)."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def skey(self) -> str:
        """The private key in ``PRIVATE+KEY+name+hex(id)+base64(0x01 || seed)`` form."""
        material = bytes([ALG_ED25519]) + self.seed
        b64 = base64.b64encode(material).decode("ascii")
        return f"PRIVATE+KEY+{self._name}+{self._key_id.hex()}+{b64}"

    @property
    def vkey(self) -> str:
        """The public verifier key text."""
        return format_vkey(self._name, self._key_id, ALG_ED25519, self._key.public_key())

    def verifier(self) -> NoteVerifier:
        """Return the verifier for this signer's public key."""
        return NoteVerifier.from_vkey(self.vkey)

    def sign_line(self, text: str) -> str:
        """Return the signature line (with newline) for note ``text``."""
        check_note_text(text)
        return format_signature_line(self._name, self._key_id, self._key.sign(text.encode()))

    def sign(self, text: str) -> str:
        """Return the signed note: text, blank line, signature line."""
        return text + "\n" + self.sign_line(text)


class NoteVerifier:
    """An Ed25519 (type 0x01) note verifier key."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        check_key_name(name)
        self._name = name
        self._key = public_key
        self._key_id = key_id(name, bytes([ALG_ED25519]) + _raw_public(public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``name+hex(id)+base64(0x01 || pubkey)``, checking the key ID."""
        name, _, public_key = load_ed25519_vkey(vkey, ALG_ED25519)
        return cls(name, public_key)

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key text."""
        return format_vkey(self._name, self._key_id, ALG_ED25519, self._key)

    def verify(self, text: bytes, sig: bytes) -> bool:
        """Return whether ``sig`` is this key's Ed25519 signature of ``text``."""
        if len(sig) != 64:
            return False
        try:
            self._key.verify(sig, text)
        except InvalidSignature:
            return False
        return True


class NoteSignature(NamedTuple):
    """One parsed signature line: key name, 4-byte key ID, signature bytes (unpackable)."""

    name: str
    key_id: bytes
    sig: bytes


@dataclass(frozen=True)
class Note:
    """An opened note: its text, every signature line, and who verified it."""

    text: str
    signatures: list[NoteSignature]
    verified_by: list[str]


def parse_signature_line(line: str, where: str = "signature line") -> NoteSignature:
    """Parse ``— name base64(id || sig)`` (trailing newline optional)."""
    body = line[:-1] if line.endswith("\n") else line
    if not body.startswith(_SIG_PREFIX):
        raise NoteError(f"{where} does not start with an em dash and a space: {body!r}")
    rest = body[len(_SIG_PREFIX) :]
    name, sep, b64 = rest.rpartition(" ")
    if not sep:
        raise NoteError(f"{where} has no space between key name and signature: {body!r}")
    check_key_name(name)
    raw = b64decode_strict(b64, f"{where} ({name})")
    if len(raw) < 5:
        raise NoteError(f"{where} ({name}) signature is {len(raw)} bytes, need at least 5")
    return NoteSignature(name=name, key_id=raw[:4], sig=raw[4:])


def _split_note(note: str | bytes) -> tuple[str, list[NoteSignature], list[str]]:
    """Split a note into text, parsed signatures and raw signature lines (unverified)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"note is not valid UTF-8 at byte {exc.start}") from exc
    match = _CONTROL.search(note)
    if match:
        line = note.count("\n", 0, match.start()) + 1
        raise NoteError(f"note line {line} contains control character {match.group()!r}")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line separating text from signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    if not sig_block:
        raise NoteError("note has no signature lines")
    if not sig_block.endswith("\n"):
        raise NoteError("note's last signature line does not end with a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures, more than the limit {MAX_SIGNATURES}")
    text_lines = text.count("\n")
    sigs = [
        parse_signature_line(line, f"note line {text_lines + 2 + i}")
        for i, line in enumerate(lines)
    ]
    return text, sigs, [line + "\n" for line in lines]


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse a note and verify it against trusted keys; raise NoteError unless verified."""
    text, sigs, _ = _split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified_by: list[str] = []
    message = text.encode("utf-8")
    for sig in sigs:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue  # the spec requires ignoring unknown keys (rotation, cosigners)
        if not verifier.verify(message, sig.sig):
            raise NoteError(
                f"signature from known key {sig.name!r} (ID {sig.key_id.hex()}) does not verify"
            )
        if sig.name not in verified_by:
            verified_by.append(sig.name)
    if not verified_by:
        names = ", ".join(sorted({repr(v.name) for v in verifiers})) or "none"
        raise NoteError(f"note has no valid signature from a known key (known: {names})")
    return Note(text=text, signatures=sigs, verified_by=verified_by)


def add_signatures(note: str, extra_lines: Sequence[str]) -> str:
    """Return ``note`` with extra signature lines appended, skipping exact duplicates."""
    text, _, lines = _split_note(note)
    for i, extra in enumerate(extra_lines):
        for piece in extra.splitlines():
            if not piece:
                continue
            parse_signature_line(piece, f"extra signature line {i}")
            if piece + "\n" not in lines:
                lines.append(piece + "\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note would have {len(lines)} signatures, limit is {MAX_SIGNATURES}")
    return text + "\n" + "".join(lines)
