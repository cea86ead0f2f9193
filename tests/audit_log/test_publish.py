"""The witness publishing rule: a checkpoint is served only once enough witnesses cosign it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from audit_log._checkpoint import CosignatureSigner, open_checkpoint, verify_tlog_proof
from audit_log._errors import WitnessConflict, WitnessError
from audit_log._log import AuditLog, WitnessEndpoint
from audit_log._note import NoteSigner
from audit_log._witness import Witness

from ._factories import mixed_entries

ORIGIN = "audit.example.gov.uk/log"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, bytes(range(32)))


def _transport(witnesses: dict[str, Witness], down: set[str]) -> httpx.MockTransport:
    """Route POST http://<host>/add-checkpoint to an in-process Witness, as its HTTP app does."""

    def handle(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in down:
            raise httpx.ConnectError("connection refused", request=request)
        assert request.headers["authorization"] == "Bearer t"
        try:
            return httpx.Response(
                200, text=witnesses[host].add_checkpoint(request.content.decode())
            )
        except WitnessConflict as exc:
            return httpx.Response(409, text=f"{exc.size}\n")
        except WitnessError as exc:
            return httpx.Response(exc.status, text=str(exc))

    return httpx.MockTransport(handle)


@pytest.fixture
def setup(
    tmp_path: Path, signer: NoteSigner
) -> Callable[..., tuple[dict[str, Witness], set[str], Callable[..., AuditLog]]]:
    def make(
        names: tuple[str, ...] = ("w1",), quorum: int | None = None
    ) -> tuple[dict[str, Witness], set[str], Callable[..., AuditLog]]:
        witnesses = {
            name: Witness(
                tmp_path / f"{name}.json",
                CosignatureSigner.from_seed(f"ig.example/{name}", bytes([i + 1]) * 32),
                {ORIGIN: signer.verifier()},
            )
            for i, name in enumerate(names)
        }
        down: set[str] = set()
        endpoints = [
            WitnessEndpoint(f"http://{n}", w.signer.verifier(), "t") for n, w in witnesses.items()
        ]

        def open_log() -> AuditLog:
            client = httpx.Client(transport=_transport(witnesses, down))
            return AuditLog.open(
                str(tmp_path / "log.db"),
                signer,
                witnesses=endpoints,
                witness_quorum=quorum,
                http_client=client,
            )

        return witnesses, down, open_log

    return make


def test_checkpoint_is_published_with_a_valid_cosignature(setup, signer: NoteSigner) -> None:
    witnesses, _, open_log = setup()
    with open_log() as log:
        done = log.append_many(mixed_entries(5))
        note = log.checkpoint()
        cp, opened = open_checkpoint(note, signer.verifier())
        assert cp.size == 5
        witness = witnesses["w1"].signer.verifier()
        cosigs = [s for s in note.split("\n\n", 1)[1].splitlines() if "ig.example/w1" in s]
        assert len(cosigs) == 1
        witness.verify_line(cp.to_text(), cosigs[0] + "\n")
        assert log.published_checkpoint() == note
        receipt = log.receipt(done[2].index)
        assert "ig.example/w1" in receipt
        verify_tlog_proof(receipt, done[2].leaf, signer.verifier())


def test_nothing_is_published_while_the_witness_is_down(setup) -> None:
    _, down, open_log = setup()
    with open_log() as log:
        log.append_many(mixed_entries(3))
        first = log.checkpoint()
        down.add("w1")
        log.append_many(mixed_entries(3, seed=2))
        with pytest.raises(WitnessError, match="not published: 0 of 1"):
            log.checkpoint()
        assert log.published_checkpoint() == first
        down.clear()
        assert log.checkpoint() != first  # published once the witness is back


def test_log_restart_recovers_the_witness_size_from_409(setup) -> None:
    witnesses, _, open_log = setup()
    with open_log() as log:
        log.append_many(mixed_entries(4))
        log.checkpoint()
    with open_log() as log:  # forgets the witness's size: starts at old 0, gets 409 with 4
        assert log.published_checkpoint() is not None
        log.append_many(mixed_entries(4, seed=9))
        note = log.checkpoint()
        assert "\n8\n" in note
    record = witnesses["w1"].record(ORIGIN)
    assert record is not None and record.size == 8


def test_a_restored_older_backup_is_never_cosigned_again(setup, tmp_path: Path) -> None:
    # What docs/operations.md says of a rolled-back log: the service starts,
    # but the witness, which cosigned a larger tree, refuses every checkpoint.
    import sqlite3

    witnesses, _, open_log = setup()
    backup = tmp_path / "backup.db"
    with open_log() as log:
        log.append_many(mixed_entries(5))
        log.checkpoint()
        with sqlite3.connect(tmp_path / "log.db") as src, sqlite3.connect(backup) as dst:
            src.backup(dst)
        log.append_many(mixed_entries(5, seed=2))
        log.checkpoint()
    assert witnesses["w1"].record(ORIGIN).size == 10  # type: ignore[union-attr]
    with sqlite3.connect(backup) as src, sqlite3.connect(tmp_path / "log.db") as dst:
        src.backup(dst)
    with open_log() as log:
        assert log.size == 5 and "\n5\n" in (log.published_checkpoint() or "")
        log.append_many(mixed_entries(1, seed=3))
        with pytest.raises(
            WitnessError, match="witness has seen size 10, larger than this log's 6"
        ):
            log.checkpoint()
        log.append_many(mixed_entries(6, seed=4))  # past the witness's size: another history
        with pytest.raises(WitnessError, match="consistency proof .* from 10 to 12 failed"):
            log.checkpoint()
        assert "\n5\n" in (log.published_checkpoint() or "")
    assert witnesses["w1"].record(ORIGIN).size == 10  # type: ignore[union-attr]


def test_quorum_of_one_in_two(setup) -> None:
    _, down, open_log = setup(("w1", "w2"), quorum=1)
    with open_log() as log:
        down.add("w2")
        log.append_many(mixed_entries(2))
        note = log.checkpoint()
        assert "ig.example/w1" in note and "ig.example/w2" not in note


def test_a_cosignature_from_the_wrong_key_is_not_accepted(
    setup, tmp_path: Path, signer: NoteSigner
) -> None:
    witnesses, _, open_log = setup()
    # Swap the witness's key: its lines no longer verify with the pinned vkey.
    witnesses["w1"] = Witness(
        tmp_path / "impostor.json",
        CosignatureSigner.from_seed("ig.example/w1", bytes([99]) * 32),
        {ORIGIN: signer.verifier()},
    )
    with open_log() as log:
        log.append_many(mixed_entries(2))
        with pytest.raises(WitnessError, match="no cosignature that verifies"):
            log.checkpoint()
