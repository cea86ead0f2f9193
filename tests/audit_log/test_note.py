"""Tests for audit_log._note: the C2SP signed-note vector, tampering, limits, keys."""

from __future__ import annotations

import base64
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log._errors import NoteError
from audit_log._note import (
    MAX_SIGNATURES,
    NoteSigner,
    NoteVerifier,
    add_signatures,
    key_id,
    open_note,
)
from tests.audit_log._shared import shared_testdata

C2SP = shared_testdata() / "c2sp"


@pytest.fixture(scope="module")
def vector() -> tuple[bytes, NoteVerifier]:
    """The signed-note spec's worked example (c2sp.org/signed-note, §Example)."""
    note = (C2SP / "example.note").read_bytes()
    verifier = NoteVerifier.from_vkey((C2SP / "example.vkey").read_text())
    return note, verifier


def make_signer(name: str = "log.example/a", seed: int = 1) -> NoteSigner:
    """A deterministic signer: seed bytes derived from a small integer."""
    return NoteSigner.from_seed(name, bytes([seed]) * 32)


def test_c2sp_vector_verifies(vector: tuple[bytes, NoteVerifier]) -> None:
    note, verifier = vector
    opened = open_note(note, [verifier])
    assert opened.text == "This is an example message.\n"
    assert opened.verified_by == ["example.com/foo"]
    assert len(opened.signatures) == 1
    assert opened.signatures[0].key_id == bytes.fromhex("530d903a")
    # The vkey's ID is the recommended hash of name, 0x0A, 0x01 and the key.
    assert verifier.key_id == bytes.fromhex("530d903a")
    assert verifier.vkey == (C2SP / "example.vkey").read_text().strip()
    # str input behaves the same as bytes.
    assert open_note(note.decode(), [verifier]) == opened


def test_c2sp_vector_every_byte_change_rejected(vector: tuple[bytes, NoteVerifier]) -> None:
    note, verifier = vector
    rng = random.Random(2014)
    for i in range(len(note)):
        for delta in (1, rng.randrange(2, 256)):
            tampered = bytearray(note)
            tampered[i] = (tampered[i] + delta) % 256
            with pytest.raises(NoteError):
                open_note(bytes(tampered), [verifier])
                pytest.fail(f"byte {i} changed by {delta} was accepted")


def test_c2sp_vector_deletions_rejected(vector: tuple[bytes, NoteVerifier]) -> None:
    note, verifier = vector
    for i in range(len(note)):
        with pytest.raises(NoteError):
            open_note(note[:i] + note[i + 1 :], [verifier])
            pytest.fail(f"deleting byte {i} was accepted")


def test_truncated_notes_rejected(vector: tuple[bytes, NoteVerifier]) -> None:
    note, verifier = vector
    for cut in range(len(note)):
        with pytest.raises(NoteError):
            open_note(note[:cut], [verifier])


@pytest.mark.parametrize(
    ("note", "match"),
    [
        ("hello\n", "no blank line"),
        ("hello\n\n", "no signature lines"),
        ("hello\n\n— a.example/x AAAAAAA=", "does not end with a newline"),
        ("hello\n\nx a.example/x AAAAAAA=\n", "em dash"),
        ("hello\n\n— a.example/xAAAAAAA=\n", "no space"),
        ("hello\n\n— a.example/x AAAA\n", "at least 5"),
        ("hello\n\n— a.example/x !!!!\n", "base64"),
        ("hello\n\n— a.example/x AAAAAAB=\n", "canonical"),
        ("hello\n\n— a+b AAAAAAA=\n", "'\\+'"),
        ("he\tllo\n\n— a.example/x AAAAAAA=\n", "line 1 contains control"),
        ("hello\n\n—  AAAAAAA=\n", "empty"),
    ],
    ids=[
        "no-blank-line",
        "no-signatures",
        "unterminated-signature",
        "missing-em-dash",
        "missing-space",
        "short-signature",
        "bad-base64",
        "noncanonical-base64",
        "plus-in-name",
        "control-character",
        "empty-name",
    ],
)
def test_malformed_notes(note: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        open_note(note, [make_signer().verifier()])


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff\n\n\xe2\x80\x94 a AAAAAAA=\n", [make_signer().verifier()])


def test_sign_and_open_round_trip() -> None:
    signer = make_signer()
    note = signer.sign("line one\n\nline three after an empty line\n")
    opened = open_note(note, [signer.verifier()])
    assert opened.text == "line one\n\nline three after an empty line\n"
    assert opened.verified_by == [signer.name]


def test_sign_rejects_bad_text() -> None:
    with pytest.raises(NoteError, match="end with a newline"):
        make_signer().sign("no newline")
    with pytest.raises(NoteError, match="control"):
        make_signer().sign("a\rb\n")


def test_unknown_keys_ignored_but_one_known_needed() -> None:
    known = make_signer("log.example/a", 1)
    same_name_other_key = make_signer("log.example/a", 2)
    other = make_signer("other.example/b", 3)
    text = "payload\n"
    note = add_signatures(
        known.sign(text), [same_name_other_key.sign_line(text), other.sign_line(text)]
    )
    opened = open_note(note, [known.verifier()])
    assert opened.verified_by == [known.name]
    assert len(opened.signatures) == 3
    # Only unknown signatures: rejected.
    only_unknown = other.sign(text)
    with pytest.raises(NoteError, match="no valid signature from a known key"):
        open_note(only_unknown, [known.verifier()])
    with pytest.raises(NoteError, match="known: none"):
        open_note(only_unknown, [])


def test_bad_signature_from_known_key_rejects_note() -> None:
    signer = make_signer()
    other_signature = base64.b64encode(signer.key_id + bytes(64)).decode()
    note = signer.sign("payload\n") + f"— {signer.name} {other_signature}\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note, [signer.verifier()])


def test_signature_limit() -> None:
    signer = make_signer()
    text = "payload\n"
    filler = [make_signer(f"w{i}.example/x", 10).sign_line(text) for i in range(MAX_SIGNATURES)]
    at_limit = text + "\n" + "".join(filler)
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(at_limit, [signer.verifier()])  # parses: limit not exceeded
    over = signer.sign(text) + "".join(filler)
    with pytest.raises(NoteError, match="more than the limit"):
        open_note(over, [signer.verifier()])
    with pytest.raises(NoteError, match="limit"):
        add_signatures(signer.sign(text), filler)


def test_add_signatures_merges_and_deduplicates() -> None:
    a, b = make_signer("a.example/x", 1), make_signer("b.example/y", 2)
    text = "payload\n"
    note = a.sign(text)
    merged = add_signatures(note, [b.sign_line(text), b.sign_line(text).rstrip("\n")])
    assert merged == note + b.sign_line(text)
    assert open_note(merged, [a.verifier(), b.verifier()]).verified_by == [a.name, b.name]
    with pytest.raises(NoteError, match="extra signature line 0"):
        add_signatures(note, ["not a signature"])


def test_key_id_and_vkey_forms() -> None:
    signer = make_signer("log.example/a", 7)
    pub = signer.verifier()
    raw = base64.b64decode(signer.vkey.split("+", 2)[2])
    assert raw[0] == 0x01 and len(raw) == 33
    assert key_id("log.example/a", raw) == signer.key_id == pub.key_id
    assert signer.vkey.split("+")[1] == signer.key_id.hex()
    assert NoteSigner.from_seed(signer.name, signer.seed).vkey == signer.vkey
    assert NoteSigner.from_skey(signer.skey).vkey == signer.vkey
    assert NoteSigner("log.example/a", Ed25519PrivateKey.from_private_bytes(signer.seed)).key_id


@pytest.mark.parametrize(
    ("vkey", "match"),
    [
        ("example.com/foo+530d903a", "three"),
        ("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "hex"),
        ("example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/foo+530d903a+BekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "type 0x05"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2", "base64"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3Q==", "32 bytes"),
        ("+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "empty"),
    ],
    ids=[
        "two-parts",
        "wrong-id",
        "uppercase-id",
        "wrong-name",
        "wrong-type",
        "bad-base64",
        "short-key",
        "empty-name",
    ],
)
def test_bad_vkeys(vkey: str, match: str) -> None:
    with pytest.raises(NoteError, match=match):
        NoteVerifier.from_vkey(vkey)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(min_codepoint=0x20, codec="utf-8") | st.just("\n"), max_size=200
    )
)
def test_any_valid_text_round_trips(text: str) -> None:
    text = text + "\n"
    signer = make_signer()
    assert open_note(signer.sign(text), [signer.verifier()]).text == text


@settings(max_examples=200, derandomize=True, deadline=None)
@given(data=st.binary(max_size=300))
def test_parser_never_raises_foreign_errors(data: bytes) -> None:
    try:
        open_note(data, [make_signer().verifier()])
    except NoteError:
        pass


def test_signatures_unpack_as_name_id_sig(vector: tuple[bytes, NoteVerifier]) -> None:
    note, verifier = vector
    [(name, kid, sig)] = open_note(note, [verifier]).signatures
    assert (name, kid.hex(), len(sig)) == ("example.com/foo", "530d903a", 64)
