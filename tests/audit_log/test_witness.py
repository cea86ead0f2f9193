"""Tests for audit_log._witness: tlog-witness add-checkpoint semantics and its HTTP shell."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit_log._checkpoint import (
    Checkpoint,
    CosignatureSigner,
    format_add_checkpoint,
    sign_checkpoint,
)
from audit_log._cli import _json_logs
from audit_log._errors import WitnessConflict, WitnessError
from audit_log._merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from audit_log._note import NoteSigner, add_signatures, open_note
from audit_log._witness import SIZE_CONTENT_TYPE, Witness, create_witness_app, hash_token

ORIGIN = "audit.example/log"
NOW = 1_750_000_000
TOKEN = "s3cret-token-for-tests"


class Log:
    """A tiny in-memory log that signs checkpoints, for driving the witness."""

    def __init__(self, seed: int = 0x11, origin: str = ORIGIN) -> None:
        self.signer = NoteSigner.from_seed(origin, bytes([seed]) * 32)
        self.tree = MerkleTree()

    def grow(self, n: int) -> None:
        for _ in range(n):
            self.tree.append(leaf_hash(f"entry {self.tree.size}".encode()))

    def checkpoint(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        cp = Checkpoint(self.signer.name, size, self.tree.root(size))
        return sign_checkpoint(cp, self.signer)

    def body(self, old: int, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        return format_add_checkpoint(
            old, self.tree.consistency_proof(old, size), self.checkpoint(size)
        )


@pytest.fixture
def make_witness(tmp_path: Path) -> Callable[..., Witness]:
    """Factory: a witness over ``log`` with state in tmp_path and a fixed clock."""

    def factory(log: Log, clock: Callable[[], float] = lambda: NOW) -> Witness:
        signer = CosignatureSigner.from_seed("ig.example/witness", b"\x22" * 32)
        return Witness(tmp_path / "witness.json", signer, {ORIGIN: log.signer.verifier()}, clock)

    return factory


def test_happy_path_cosigns_and_records(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(5)
    line = witness.add_checkpoint(log.body(0))
    assert line.startswith("— ig.example/witness ") and line.endswith("\n")
    cp_text = Checkpoint(ORIGIN, 5, log.tree.root()).to_text()
    assert witness.signer.verifier().verify_line(cp_text, line) == NOW
    cosigned = add_signatures(log.checkpoint(), [line])
    opened = open_note(cosigned, [log.signer.verifier(), witness.signer.verifier()])
    assert opened.verified_by == [ORIGIN, "ig.example/witness"]
    record = witness.record(ORIGIN)
    assert record is not None and record.size == 5 and record.root_hash == log.tree.root()

    log.grow(9)
    witness.add_checkpoint(log.body(5))
    assert witness.record(ORIGIN).size == 14  # type: ignore[union-attr]
    # Same size, same root: cosigned again (a fresh timestamp), not a conflict.
    witness.add_checkpoint(log.body(14))


def test_conflict_reports_witness_size(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(8)
    witness.add_checkpoint(log.body(0))
    log.grow(4)
    with pytest.raises(WitnessConflict) as info:
        witness.add_checkpoint(log.body(3))
    assert info.value.size == 8 and info.value.status == 409
    # A client that does not know the state asks with old size 0.
    with pytest.raises(WitnessConflict) as info:
        witness.add_checkpoint(log.body(0))
    assert info.value.size == 8


def test_bad_consistency_proof_is_422(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(6)
    witness.add_checkpoint(log.body(0))
    log.grow(7)
    proof = log.tree.consistency_proof(6, 13)
    proof[0] = bytes(32)
    with pytest.raises(WitnessError, match="consistency proof") as info:
        witness.add_checkpoint(format_add_checkpoint(6, proof, log.checkpoint()))
    assert info.value.status == 422
    assert witness.record(ORIGIN).size == 6  # type: ignore[union-attr]


def test_nonempty_proof_from_zero_is_422(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(3)
    with pytest.raises(WitnessError, match="must be empty") as info:
        witness.add_checkpoint(format_add_checkpoint(0, [bytes(32)], log.checkpoint()))
    assert info.value.status == 422


def test_fork_refused(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(4)
    witness.add_checkpoint(log.body(0))
    # The same log key signs a different tree of the same size: a split view.
    forked = Log()
    forked.tree.extend(leaf_hash(f"other {i}".encode()) for i in range(4))
    note = sign_checkpoint(Checkpoint(ORIGIN, 4, forked.tree.root()), log.signer)
    with pytest.raises(WitnessError, match="fork") as info:
        witness.add_checkpoint(format_add_checkpoint(4, [], note))
    assert info.value.status == 422
    # A larger forked tree fails the consistency proof from the recorded root.
    forked.tree.extend(leaf_hash(b"more") for _ in range(3))
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, forked.tree.root()), log.signer)
    with pytest.raises(WitnessError) as info:
        witness.add_checkpoint(format_add_checkpoint(4, forked.tree.consistency_proof(4, 7), note))
    assert info.value.status == 422
    assert witness.record(ORIGIN).root_hash == log.tree.root(4)  # type: ignore[union-attr]


def test_never_rolls_back(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(10)
    witness.add_checkpoint(log.body(0))
    with pytest.raises(WitnessConflict):
        witness.add_checkpoint(log.body(0, size=6))
    with pytest.raises(WitnessError, match="larger than checkpoint size") as info:
        witness.add_checkpoint(log.body(0, size=6).replace("old 0\n", "old 10\n", 1))
    assert info.value.status == 400
    assert witness.record(ORIGIN).size == 10  # type: ignore[union-attr]


def test_unknown_log_is_404(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(Log())
    stranger = Log(seed=0x33, origin="stranger.example/log")
    stranger.grow(2)
    with pytest.raises(WitnessError, match="unknown log origin") as info:
        witness.add_checkpoint(stranger.body(0))
    assert info.value.status == 404


def test_wrong_log_key_is_403(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    impostor = Log(seed=0x44)  # same origin, different key
    impostor.grow(2)
    with pytest.raises(WitnessError) as info:
        witness.add_checkpoint(impostor.body(0))
    assert info.value.status == 403


def test_empty_checkpoint_must_have_empty_root(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    witness.add_checkpoint(log.body(0))  # size 0, empty root: fine
    bad = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), log.signer)
    with pytest.raises(WitnessError, match="empty-tree root") as info:
        witness.add_checkpoint(format_add_checkpoint(0, [], bad))
    assert info.value.status == 422
    assert witness.record(ORIGIN).root_hash == EMPTY_ROOT  # type: ignore[union-attr]


def test_malformed_body_is_400(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(Log())
    with pytest.raises(WitnessError) as info:
        witness.add_checkpoint("old x\n\nnot a checkpoint")
    assert info.value.status == 400


def test_state_survives_restart(make_witness: Callable[..., Witness], tmp_path: Path) -> None:
    log = Log()
    log.grow(7)
    make_witness(log).add_checkpoint(log.body(0))
    restarted = make_witness(log)
    assert restarted.record(ORIGIN).size == 7  # type: ignore[union-attr]
    with pytest.raises(WitnessConflict) as info:
        restarted.add_checkpoint(log.body(0))
    assert info.value.size == 7
    log.grow(1)
    restarted.add_checkpoint(log.body(7))
    state = json.loads((tmp_path / "witness.json").read_text())
    assert state["logs"][ORIGIN]["size"] == 8
    # No temp files are left behind by the atomic write.
    assert [p.name for p in tmp_path.iterdir()] == ["witness.json"]


def test_corrupt_state_fails_closed(make_witness: Callable[..., Witness], tmp_path: Path) -> None:
    (tmp_path / "witness.json").write_text('{"version": 1, "logs": {"x": {"size": 1}}}')
    with pytest.raises(WitnessError, match="corrupt"):
        make_witness(Log())
    (tmp_path / "witness.json").write_text("not json")
    with pytest.raises(WitnessError, match="corrupt"):
        make_witness(Log())


def test_zero_clock_refused(make_witness: Callable[..., Witness]) -> None:
    witness = make_witness(Log(), clock=lambda: 0)
    with pytest.raises(WitnessError, match="clock"):
        witness.add_checkpoint(Log().body(0))


# --- HTTP -----------------------------------------------------------------


async def _post(witness: Witness, body: str, token: str | None = TOKEN) -> httpx.Response:
    app = create_witness_app(witness, [hash_token(TOKEN)])
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://witness") as client:
        return await client.post("/add-checkpoint", content=body, headers=headers)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_http_happy_path_and_conflict(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(3)
    response = await _post(witness, log.body(0))
    assert response.status_code == 200, response.text
    assert response.text.startswith("— ig.example/witness ")
    response = await _post(witness, log.body(0))
    assert response.status_code == 409
    assert response.headers["content-type"] == SIZE_CONTENT_TYPE
    assert response.text == "3\n"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "token", [None, "wrong-token", ""], ids=["no-header", "wrong-token", "empty-token"]
)
async def test_http_unauthenticated(
    make_witness: Callable[..., Witness], token: str | None
) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(1)
    response = await _post(witness, log.body(0), token=token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert witness.record(ORIGIN) is None


@pytest.mark.anyio
async def test_http_error_statuses(make_witness: Callable[..., Witness]) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(4)
    assert (await _post(witness, "garbage")).status_code == 400
    stranger = Log(seed=0x33, origin="stranger.example/log")
    assert (await _post(witness, stranger.body(0))).status_code == 404
    assert (await _post(witness, Log(seed=0x44).body(0))).status_code == 403
    bad = format_add_checkpoint(0, [bytes(32)], log.checkpoint())
    assert (await _post(witness, bad)).status_code == 422
    app = create_witness_app(witness, [hash_token(TOKEN)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://witness") as client:
        response = await client.post(
            "/add-checkpoint", content=b"\xff", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 400


def test_app_requires_tokens(make_witness: Callable[..., Witness]) -> None:
    with pytest.raises(WitnessError, match="no bearer token"):
        create_witness_app(make_witness(Log()), [])
    with pytest.raises(WitnessError, match="32 bytes"):
        create_witness_app(make_witness(Log()), [b"short"])


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """``audit-log witness serve``'s logging, set up as the command does (restored after)."""
    loggers = [logging.getLogger(n) for n in ("audit_log", "uvicorn.error")]
    state = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    stream = io.StringIO()
    _json_logs("audit-witness", stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        for lg, handlers, level, propagate in state:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


@pytest.mark.anyio
async def test_the_witness_logs_json_lines_for_each_checkpoint_cosigned_or_refused(
    make_witness: Callable[..., Witness], json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    log = Log()
    witness = make_witness(log)
    log.grow(3)
    assert (await _post(witness, log.body(0))).status_code == 200
    assert (await _post(witness, log.body(0))).status_code == 409
    assert (await _post(witness, log.body(3), token="wrong-token")).status_code == 401
    assert (await _post(witness, "garbage")).status_code == 400
    lines = json_logs()
    assert [(x["message"], x["status"]) for x in lines] == [
        ("checkpoint cosigned", 200),
        ("checkpoint refused: its old size is not the size last cosigned", 409),
        ("authentication refused", 401),
        ("checkpoint refused", 400),
    ]
    assert all(x["service"] == "audit-witness" and "time" in x for x in lines)
    assert lines[1]["size"] == 3
    assert TOKEN not in json.dumps(lines) and "wrong-token" not in json.dumps(lines)
