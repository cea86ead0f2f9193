"""Tests for audit_log._checkpoint: checkpoints, cosignatures, tlog-proof, add-checkpoint."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_log._checkpoint import (
    MAX_CONSISTENCY_LINES,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_message,
    format_add_checkpoint,
    format_tlog_proof,
    open_checkpoint,
    parse_add_checkpoint,
    parse_tlog_proof,
    sign_checkpoint,
    verify_tlog_proof,
)
from audit_log._errors import AuditLogError, CheckpointError, NoteError, ProofError
from audit_log._merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from audit_log._note import NoteSigner, add_signatures, key_id, open_note

ORIGIN = "audit.example/log"
SPEC_ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


def log_signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, b"\x11" * 32)


def witness_signer(name: str = "ig.example/witness", seed: int = 0x22) -> CosignatureSigner:
    return CosignatureSigner.from_seed(name, bytes([seed]) * 32)


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def test_checkpoint_text_matches_spec_example() -> None:
    # The body of the c2sp.org/tlog-checkpoint example.
    cp = Checkpoint("example.com/behind-the-sofa", 20852163, SPEC_ROOT)
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cp.to_text() == text
    assert Checkpoint.from_text(text) == cp


def test_checkpoint_round_trip_with_extensions() -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT, ("ext one", "ext two"))
    assert Checkpoint.from_text(cp.to_text()) == cp


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("o\n1\n" + base64.b64encode(EMPTY_ROOT).decode(), "end with a newline"),
        ("o\n1\n", "need at least 3"),
        ("\n1\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n", "line 1 is empty"),
        ("o\n01\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n", "line 2"),
        ("o\n+1\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n", "line 2"),
        ("o\n1_0\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n", "line 2"),
        ("o\n\u0661\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n", "line 2"),
        ("o\n-1\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n", "line 2"),
        ("o\n9223372036854775808\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n", "2\\*\\*63"),
        ("o\n1\nAAAA\n", "32 bytes"),
        ("o\n1\nnot base64!\n", "line 3"),
        ("o\n1\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n\n", "line 4 is empty"),
    ],
    ids=[
        "no-final-newline",
        "two-lines",
        "empty-origin",
        "leading-zero",
        "plus-sign",
        "underscore",
        "arabic-digit",
        "negative",
        "too-large",
        "short-root",
        "bad-base64",
        "empty-extension",
    ],
)
def test_checkpoint_strict_parsing(text: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        Checkpoint.from_text(text)


def test_sign_and_open_checkpoint() -> None:
    tree = MerkleTree(leaf_hash(e) for e in entries(10))
    cp = Checkpoint(ORIGIN, tree.size, tree.root())
    signer = log_signer()
    note = sign_checkpoint(cp, signer)
    opened_cp, note_obj = open_checkpoint(note, signer.verifier())
    assert opened_cp == cp
    assert note_obj.verified_by == [ORIGIN]


def test_checkpoint_origin_must_match_key_name() -> None:
    other = NoteSigner.from_seed("other.example/log", b"\x33" * 32)
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    with pytest.raises(CheckpointError, match="does not match checkpoint origin"):
        sign_checkpoint(cp, other)
    note = other.sign(cp.to_text())  # signed anyway, bypassing sign_checkpoint
    with pytest.raises(CheckpointError, match="origin 'audit.example/log' does not match"):
        open_checkpoint(note, other.verifier())


def test_open_checkpoint_wrong_key() -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    impostor = NoteSigner.from_seed(ORIGIN, b"\x44" * 32)
    with pytest.raises(NoteError):
        open_checkpoint(sign_checkpoint(cp, impostor), log_signer().verifier())


def test_cosignature_fixed_timestamp_round_trip() -> None:
    cp_text = Checkpoint(ORIGIN, 3, MerkleTree(leaf_hash(e) for e in entries(3)).root()).to_text()
    witness = witness_signer()
    line = witness.cosign(cp_text, 1_679_315_147)
    assert line.startswith("— ig.example/witness ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[-1])
    assert raw[:4] == witness.key_id
    assert int.from_bytes(raw[4:12], "big") == 1_679_315_147
    assert len(raw) == 4 + 8 + 64
    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    assert verifier.verify_line(cp_text, line) == 1_679_315_147
    # Deterministic: Ed25519 signatures are deterministic for a fixed key and message.
    assert witness.cosign(cp_text, 1_679_315_147) == line


def test_cosignature_key_id_and_vkey_use_type_4() -> None:
    witness = witness_signer()
    material = base64.b64decode(witness.vkey.split("+", 2)[2])
    assert material[0] == 0x04
    assert witness.key_id == key_id(witness.name, material)
    # The same key as a plain note key (type 0x01) has a different ID.
    assert NoteSigner.from_seed(witness.name, b"\x22" * 32).key_id != witness.key_id
    with pytest.raises(CheckpointError, match="type 0x01, expected 0x04"):
        CosignatureVerifier.from_vkey(NoteSigner.from_seed(witness.name, b"\x22" * 32).vkey)


def test_cosignature_message_format() -> None:
    assert cosignature_message("o\n1\nroot\n", 5) == b"cosignature/v1\ntime 5\no\n1\nroot\n"


def test_cosignature_rejections() -> None:
    cp_text = Checkpoint(ORIGIN, 0, EMPTY_ROOT).to_text()
    witness = witness_signer()
    verifier = witness.verifier()
    line = witness.cosign(cp_text, 100)
    other_text = Checkpoint(ORIGIN, 0, EMPTY_ROOT, ("ext",)).to_text()
    with pytest.raises(CheckpointError, match="does not verify"):
        verifier.verify_line(other_text, line)
    # Changing the timestamp invalidates the signature.
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[11] ^= 1
    forged = f"— {witness.name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(CheckpointError, match="at time 101 does not verify"):
        verifier.verify_line(cp_text, forged)
    with pytest.raises(CheckpointError, match="expected 'other.example/w'"):
        witness_signer("other.example/w", 0x22).verifier().verify_line(cp_text, line)
    with pytest.raises(CheckpointError, match="out of range"):
        witness.cosign(cp_text, -1)
    with pytest.raises(CheckpointError):
        witness.cosign("not a checkpoint\n", 1)


def test_cosigned_note_opens_with_both_keys() -> None:
    log = log_signer()
    witness = witness_signer()
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), log)
    opened, _ = open_checkpoint(note, log.verifier())
    cosigned = add_signatures(note, [witness.cosign(opened.to_text(), 42)])
    result = open_note(cosigned, [log.verifier(), witness.verifier()])
    assert result.verified_by == [ORIGIN, witness.name]
    # The log key alone still opens it: the witness line is an unknown key.
    assert open_checkpoint(cosigned, log.verifier())[0] == opened


def _proof_fixture(n: int = 13, index: int = 6, extra: bytes | None = None) -> tuple[str, bytes]:
    data = entries(n)
    tree = MerkleTree(leaf_hash(e) for e in data)
    note = sign_checkpoint(Checkpoint(ORIGIN, n, tree.root()), log_signer())
    return format_tlog_proof(index, tree.inclusion_proof(index, n), note, extra), data[index]


def test_tlog_proof_round_trip() -> None:
    text, entry = _proof_fixture(extra=b"context")
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"context").decode()
    assert lines[2] == "index 6"
    parsed = parse_tlog_proof(text)
    assert parsed.index == 6 and parsed.extra == b"context" and len(parsed.hashes) == 4
    assert format_tlog_proof(parsed.index, parsed.hashes, parsed.checkpoint_note, b"context") == (
        text
    )
    cp = verify_tlog_proof(text, entry, log_signer().verifier())
    assert cp.size == 13


def test_tlog_proof_without_extra_and_single_leaf() -> None:
    text, entry = _proof_fixture(n=1, index=0)
    assert text.startswith("c2sp.org/tlog-proof@v1\nindex 0\n\n")
    assert parse_tlog_proof(text).extra is None
    verify_tlog_proof(text, entry, log_signer().verifier())


def test_tlog_proof_tampering() -> None:
    text, entry = _proof_fixture()
    verifier = log_signer().verifier()
    with pytest.raises(ProofError):
        verify_tlog_proof(text, entry + b"!", verifier)
    with pytest.raises(ProofError):
        verify_tlog_proof(text.replace("index 6", "index 7"), entry, verifier)
    lines = text.split("\n")
    dropped = "\n".join(lines[:3] + lines[4:])
    with pytest.raises(ProofError):
        verify_tlog_proof(dropped, entry, verifier)
    flipped = list(lines)
    raw = bytearray(base64.b64decode(flipped[3]))
    raw[0] ^= 0x80
    flipped[3] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(ProofError):
        verify_tlog_proof("\n".join(flipped), entry, verifier)
    # Tampering with the checkpoint breaks the log signature.
    note_start = text.index("\n\n") + 2
    cp_size_line = text.index("\n13\n", note_start)
    with pytest.raises(NoteError):
        verify_tlog_proof(
            text[:cp_size_line] + "\n14\n" + text[cp_size_line + 4 :], entry, verifier
        )
    other = NoteSigner.from_seed(ORIGIN, b"\x55" * 32).verifier()
    with pytest.raises(NoteError):
        verify_tlog_proof(text, entry, other)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("c2sp.org/tlog-proof@v2\nindex 0\n\nx", "line 1"),
        ("c2sp.org/tlog-proof@v1\nindex 00\n\nx", "line 2 \\(index\\)"),
        ("c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\nx", "extra"),
        ("c2sp.org/tlog-proof@v1\nidx 0\n\nx", "must be 'index"),
        ("c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\nx", "line 3"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n", "no empty line"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n\n", "no checkpoint"),
    ],
    ids=[
        "wrong-header",
        "leading-zero-index",
        "bad-extra",
        "missing-index",
        "short-hash",
        "no-separator",
        "no-checkpoint",
    ],
)
def test_tlog_proof_malformed(text: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        parse_tlog_proof(text)


def test_add_checkpoint_round_trip_matches_spec_shape() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), log_signer())
    proof = [bytes([i]) * 32 for i in range(4)]
    body = format_add_checkpoint(20852014, proof, note)
    assert body.startswith("old 20852014\n" + base64.b64encode(proof[0]).decode() + "\n")
    request = parse_add_checkpoint(body)
    assert request.old_size == 20852014
    assert request.consistency_proof == proof
    assert request.checkpoint_note == note
    assert parse_add_checkpoint(format_add_checkpoint(0, [], note)).consistency_proof == []


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("old 1\n", "no empty line"),
        ("new 1\n\nx", "line 1 must be 'old"),
        ("old 01\n\nx", "line 1 \\(old size\\)"),
        ("old 1\nAAAA\n\nx", "line 2"),
        ("old 1\n\n", "no checkpoint"),
        ("old 1\n" + ("A" * 43 + "=\n") * (MAX_CONSISTENCY_LINES + 1) + "\nx", "limit 63"),
    ],
    ids=["no-separator", "wrong-keyword", "leading-zero", "short-hash", "no-checkpoint", "64"],
)
def test_add_checkpoint_malformed(body: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        parse_add_checkpoint(body)


def test_format_add_checkpoint_limit() -> None:
    with pytest.raises(CheckpointError, match="limit 63"):
        format_add_checkpoint(1, [bytes(32)] * 64, "x")


@settings(max_examples=200, derandomize=True, deadline=None)
@given(text=st.text(max_size=200))
def test_parsers_raise_only_our_errors(text: str) -> None:
    for parse in (Checkpoint.from_text, parse_tlog_proof, parse_add_checkpoint):
        try:
            parse(text)
        except AuditLogError:
            pass


@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    origin=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
    ),
    size=st.integers(min_value=0, max_value=2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_checkpoint_text_round_trip_property(origin: str, size: int, root: bytes) -> None:
    cp = Checkpoint(origin, size, root)
    assert Checkpoint.from_text(cp.to_text()) == cp
