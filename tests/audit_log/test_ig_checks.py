"""The IG officer's checks the web pages and the CLI share: receipts, successors,
and the unlocks-per-day summary of the anomaly report."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from audit_log import (
    AnomalyConfig,
    CheckpointError,
    DailyUnlocks,
    EntryError,
    NoteError,
    ProofError,
    anomaly_report,
    check_successor,
    find_anomalies,
    open_checkpoint,
    verify_receipt,
)
from audit_log._checkpoint import CosignatureSigner
from audit_log._errors import WitnessConflict
from audit_log._log import AuditLog, WitnessEndpoint
from audit_log._note import NoteSigner
from audit_log._witness import Witness

from ._factories import T0, hex_id, make_entry

ORIGIN = "audit.example.gov.uk/log"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, bytes(range(32)))


@pytest.fixture
def witness_signer() -> CosignatureSigner:
    return CosignatureSigner.from_seed("ig.example/witness", bytes([7]) * 32)


@pytest.fixture
def log(
    tmp_path: Path, signer: NoteSigner, witness_signer: CosignatureSigner
) -> Iterator[AuditLog]:
    """A log of six decisions whose checkpoints an in-process witness cosigns."""
    witness = Witness(tmp_path / "w.json", witness_signer, {ORIGIN: signer.verifier()})

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            return httpx.Response(200, text=witness.add_checkpoint(request.content.decode()))
        except WitnessConflict as exc:
            return httpx.Response(409, text=f"{exc.size}\n")

    opened = AuditLog.open(
        str(tmp_path / "log.db"),
        signer,
        witnesses=[WitnessEndpoint("http://w", witness_signer.verifier(), "t")],
        http_client=httpx.Client(transport=httpx.MockTransport(handle)),
    )
    try:
        opened.append_many([make_entry("decision", n) for n in range(6)])
        opened.checkpoint()
        yield opened
    finally:
        opened.close()


def test_a_receipt_verifies_with_its_entry_and_witness(
    log: AuditLog, signer: NoteSigner, witness_signer: CosignatureSigner
) -> None:
    checked = verify_receipt(
        log.receipt(3), log.leaf(3), signer.verifier().vkey, [witness_signer.vkey]
    )
    assert checked.index == 3
    assert checked.checkpoint.size == 6
    assert checked.witnesses == ["ig.example/witness"]
    assert checked.record.entry.request_id == hex_id("req", 3)  # type: ignore[union-attr]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_a_receipt_verifies_with_its_entry_as_exported(
    log: AuditLog, signer: NoteSigner, ending: bytes
) -> None:
    # audit-log export writes the leaf and a newline; the file holds the same leaf
    checked = verify_receipt(log.receipt(3), log.leaf(3) + ending, signer.verifier().vkey)
    assert checked.index == 3


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (lambda leaf: leaf + b"\n\n", EntryError),
        (lambda leaf: leaf + b" \n", ProofError),
        (lambda leaf: b" " + leaf + b"\n", ProofError),
        (lambda leaf: leaf.replace(b'"index":3', b'"index":4') + b"\n", ProofError),
    ],
    ids=["blank-line-after", "space-before-newline", "space-before-leaf", "index-changed"],
)
def test_an_exported_entry_with_another_change_is_refused(
    log: AuditLog,
    signer: NoteSigner,
    entry: Callable[[bytes], bytes],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        verify_receipt(log.receipt(3), entry(log.leaf(3)), signer.verifier().vkey)


def test_a_receipt_for_another_entry_is_refused(log: AuditLog, signer: NoteSigner) -> None:
    with pytest.raises(ProofError):
        verify_receipt(log.receipt(3), log.leaf(4), signer.verifier().vkey)


def test_a_receipt_signed_by_another_key_is_refused(log: AuditLog) -> None:
    other = NoteSigner.from_seed(ORIGIN, bytes([9]) * 32)
    with pytest.raises(NoteError):
        verify_receipt(log.receipt(3), log.leaf(3), other.verifier().vkey)


def test_a_receipt_without_the_witness_cosignature_is_refused(
    log: AuditLog, signer: NoteSigner
) -> None:
    stranger = CosignatureSigner.from_seed("ig.example/other", bytes([8]) * 32)
    with pytest.raises(CheckpointError, match="no valid cosignature"):
        verify_receipt(log.receipt(3), log.leaf(3), signer.verifier().vkey, [stranger.vkey])


def test_a_receipt_with_an_altered_hash_is_refused(log: AuditLog, signer: NoteSigner) -> None:
    receipt = log.receipt(3)
    lines = receipt.split("\n")
    # line 0 is the tlog-proof header, line 1 "index N", line 2 the first proof hash
    first = base64.b64decode(lines[2])
    lines[2] = base64.b64encode(bytes([first[0] ^ 1]) + first[1:]).decode()
    with pytest.raises(ProofError):
        verify_receipt("\n".join(lines), log.leaf(3), signer.verifier().vkey)


def test_bytes_that_are_not_a_leaf_but_hash_in_are_impossible_so_garbage_fails(
    log: AuditLog, signer: NoteSigner
) -> None:
    with pytest.raises((ProofError, EntryError)):
        verify_receipt(log.receipt(3), b"not json", signer.verifier().vkey)


def test_successor_checks(log: AuditLog, signer: NoteSigner) -> None:
    old, _ = open_checkpoint(log.published_checkpoint() or "", signer.verifier())
    log.append_many([make_entry("decision", n) for n in range(6, 9)])
    log.checkpoint()
    new, _ = open_checkpoint(log.published_checkpoint() or "", signer.verifier())
    asked: list[tuple[int, int]] = []

    def proof(a: int, b: int) -> list[bytes]:
        asked.append((a, b))
        return log.consistency_proof(a, b)

    check_successor(old, new, proof)
    assert asked == [(6, 9)]
    check_successor(new, new, proof)  # same checkpoint: nothing to prove
    assert asked == [(6, 9)]
    with pytest.raises(ProofError, match="rolled back"):
        check_successor(new, old, proof)
    with pytest.raises(ProofError):
        check_successor(old, new, lambda a, b: log.consistency_proof(a - 1, b))
    forked = type(new)(new.origin, new.size, bytes(32), new.extensions)
    with pytest.raises(ProofError, match="forked"):
        check_successor(new, forked, proof)


def test_unlocks_per_day_come_from_the_same_pass_as_the_anomalies() -> None:
    pro_a, pro_b = hex_id("pro", 1), hex_id("pro", 2)
    entries = [
        make_entry("decision", 1, professional_id=pro_a, decision="granted"),
        make_entry("decision", 2, professional_id=pro_a, decision="granted"),
        make_entry("decision", 3, professional_id=pro_b, decision="granted"),
        make_entry("decision", 4, professional_id=pro_b, decision="refused"),
        make_entry(
            "decision", 5, professional_id=pro_a, decision="granted", time=T0 + timedelta(days=1)
        ),
    ]
    leaves = [
        (
            '{"entry":'
            + e.model_dump_json()
            + f',"index":{i},"logged_at":"2026-03-02T10:00:00+00:00","v":1}}'
        ).encode()
        for i, e in enumerate(entries)
    ]
    config = AnomalyConfig(max_unlocks_per_period=1)
    anomalies, daily = anomaly_report(leaves, config, now=T0)
    assert anomalies == find_anomalies(leaves, config, now=T0)
    expected = [
        DailyUnlocks("2026-03-02", pro_a, 2),
        DailyUnlocks("2026-03-02", pro_b, 1),
        DailyUnlocks("2026-03-03", pro_a, 1),
    ]
    assert daily == sorted(expected, key=lambda d: (d.day, d.professional_id))
    assert [a.kind for a in anomalies] == ["unlocks_over_limit"]
