"""The audit-log CLI: keys, checkpoint checks with state, receipts, queries, verify-db."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from audit_log._api import create_app
from audit_log._checkpoint import Checkpoint, sign_checkpoint
from audit_log._cli import main
from audit_log._config import Settings
from audit_log._entries import parse_leaf
from audit_log._log import AuditLog
from audit_log._note import NoteSigner

from ._factories import hex_id, make_entry, mixed_entries

ORIGIN = "audit.example.gov.uk/log"
TOKEN = "ig-token"


def run(argv: list[str], **kwargs: object) -> tuple[int, str]:
    out = io.StringIO()
    status = main(argv, stdout=out, **kwargs)  # type: ignore[arg-type]
    return status, out.getvalue()


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, bytes(range(32)))


@pytest.fixture
def vkey_file(tmp_path: Path, signer: NoteSigner) -> Path:
    path = tmp_path / "log.vkey"
    path.write_text(signer.vkey + "\n")
    return path


@pytest.fixture
def server(tmp_path: Path, signer: NoteSigner) -> Iterator[tuple[str, Path]]:
    """A real HTTP log server on a free local port; yields (base URL, database path)."""
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"{hashlib.sha256(TOKEN.encode()).hexdigest()} ig_officer ig\n"
        f"{hashlib.sha256(b'w').hexdigest()} writer unlock-service\n"
    )
    tokens.chmod(0o600)
    db = tmp_path / "served.db"
    settings = Settings(db_url=f"sqlite:///{db}", token_file=tokens, checkpoint_interval=0.05)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, signer=signer), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", db
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _post(url: str, count: int, start: int = 0) -> list[dict[str, object]]:
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer w"}) as client:
        results = []
        for n in range(start, start + count):
            body = make_entry("decision", n).model_dump(mode="json")
            response = client.post("/entries", json=body)
            assert response.status_code == 201, response.text
            results.append(response.json())
        return results


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "log.key"
    status, out = run(["keygen", "--name", ORIGIN, "--out", str(key)])
    assert status == 0
    assert out.startswith(ORIGIN + "+")
    assert key.stat().st_mode & 0o777 == 0o600
    assert NoteSigner.from_skey(key.read_text()).vkey == out.strip()
    assert run(["keygen", "--name", ORIGIN, "--out", str(key)])[0] == 1


def test_witness_keygen(tmp_path: Path) -> None:
    from audit_log._config import load_cosigner

    key = tmp_path / "w.key"
    status, out = run(["witness", "keygen", "--name", "ig.example/witness", "--out", str(key)])
    assert status == 0
    assert load_cosigner(key).vkey == out.strip()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_serve_refuses_a_readable_key(
    tmp_path: Path, mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "log.key"
    key.write_text(NoteSigner.generate(ORIGIN).skey)
    key.chmod(mode)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{'0' * 64} reader\n")
    argv = ["serve", "--db", str(tmp_path / "x.db"), "--key", str(key), "--tokens", str(tokens)]
    assert run(argv)[0] == 1
    assert "chmod 600" in capsys.readouterr().err


def test_serve_refuses_a_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{'0' * 64} reader\n")
    tokens.chmod(0o600)
    argv = ["serve", "--db", "x.db", "--key", str(tmp_path / "nope"), "--tokens", str(tokens)]
    assert run(argv)[0] == 1
    assert "does not exist" in capsys.readouterr().err


def test_serve_refuses_a_token_file_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{'0' * 64} reader\n")
    tokens.chmod(0o644)
    argv = ["serve", "--db", "x.db", "--key", str(tmp_path / "nope"), "--tokens", str(tokens)]
    assert run(argv)[0] == 1
    assert "chmod 600" in capsys.readouterr().err


def test_checkpoint_state_consistency_and_receipts(
    server: tuple[str, Path],
    vkey_file: Path,
    signer: NoteSigner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = server
    monkeypatch.setenv("AUDIT_LOG_TOKEN", TOKEN)
    state = tmp_path / "seen.checkpoint"
    argv = ["checkpoint", "--url", url, "--vkey", str(vkey_file), "--state", str(state)]
    appended = _post(url, 3)
    status, out = run(argv)
    assert status == 0, capsys.readouterr().err
    assert "first checkpoint seen" in out
    _post(url, 4, start=3)
    status, out = run(argv)
    assert status == 0, capsys.readouterr().err
    assert "size 7" in out and "consistent with size 3" in out

    # Receipts verify offline; a changed entry does not.
    receipt, entry = tmp_path / "r.proof", tmp_path / "e.json"
    receipt.write_text(str(appended[1]["receipt"]))
    entry.write_text(str(appended[1]["leaf"]))
    verify = ["verify-receipt", "--vkey", str(vkey_file), "--receipt", str(receipt)]
    assert run([*verify, "--entry", str(entry)])[0] == 0
    entry.write_text(str(appended[2]["leaf"]))
    assert run([*verify, "--entry", str(entry)])[0] == 1
    assert "error" in capsys.readouterr().err
    receipt.write_text("c2sp.org/tlog-proof@v1\nindex x\n\n")
    assert run([*verify, "--entry", str(entry)])[0] == 1

    # A state showing a larger or different tree means a rollback or a fork.
    forged_root = hashlib.sha256(b"other history").digest()
    state.write_text(sign_checkpoint(Checkpoint(ORIGIN, 7, forged_root), signer))
    assert run(argv)[0] == 1
    assert "forked" in capsys.readouterr().err
    state.write_text(sign_checkpoint(Checkpoint(ORIGIN, 50, forged_root), signer))
    assert run(argv)[0] == 1
    assert "rolled back" in capsys.readouterr().err
    # A checkpoint signed by another key is refused outright.
    wrong = tmp_path / "wrong.vkey"
    wrong.write_text(NoteSigner.generate(ORIGIN).vkey)
    state.unlink()
    assert run(["checkpoint", "--url", url, "--vkey", str(wrong), "--state", str(state)])[0] == 1
    assert not state.exists()


def test_verify_receipt_takes_the_entry_as_export_writes_it(
    server: tuple[str, Path],
    vkey_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The IG officer's journey: the professional's receipt, and the entry the
    # officer exports from the log (one line, so the leaf and a newline).
    url, _ = server
    monkeypatch.setenv("AUDIT_LOG_TOKEN", TOKEN)
    appended = _post(url, 18)
    receipt = tmp_path / "receipt-req_17.txt"
    receipt.write_text(str(appended[17]["receipt"]))
    entry = tmp_path / "entry-17.json"
    remote = ["--url", url, "--vkey", str(vkey_file)]
    wanted = ["--request", hex_id("req", 17), "--type", "decision"]
    assert run(["export", *remote, *wanted, "--out", str(entry)])[0] == 0
    assert entry.read_bytes() == str(appended[17]["leaf"]).encode() + b"\n"
    verify = ["verify-receipt", "--vkey", str(vkey_file), "--receipt", str(receipt)]
    status, out = run([*verify, "--entry", str(entry)])
    assert status == 0, capsys.readouterr().err
    assert out.startswith("verified: entry 17 is in the log of size 18")
    # the same from standard output (audit-log entries … > file), and with CRLF
    _, listed = run(["entries", *remote, *wanted])
    entry.write_text(listed)
    assert run([*verify, "--entry", str(entry)])[0] == 0
    entry.write_bytes(listed.encode().replace(b"\n", b"\r\n"))
    assert run([*verify, "--entry", str(entry)])[0] == 0
    capsys.readouterr()

    # Any other change still fails, naming the file and the receipt.
    line = listed.encode()
    flipped = line.replace(b'"granted"', b'"refused"')
    assert flipped != line
    for changed in (flipped, b" " + line, line[:-1] + b" \n", line.replace(b"17", b"16", 1)):
        entry.write_bytes(changed)
        assert run([*verify, "--entry", str(entry)])[0] == 1
        err = capsys.readouterr().err
        assert f"{entry} is not the entry {receipt} proves" in err, err
    for changed, held in ((line + b"\n", "2 lines"), (line * 2, "2 lines")):
        entry.write_bytes(changed)
        assert run([*verify, "--entry", str(entry)])[0] == 1
        assert f"{entry}: the entry file holds {held}" in capsys.readouterr().err


def test_verify_receipt_reads_the_entry_from_the_log_with_url(
    server: tuple[str, Path],
    vkey_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The professional's download is the receipt alone.
    url, _ = server
    monkeypatch.setenv("AUDIT_LOG_TOKEN", TOKEN)
    appended = _post(url, 6)
    receipt = tmp_path / "receipt-req_4.txt"
    receipt.write_text(str(appended[4]["receipt"]))
    verify = ["verify-receipt", "--vkey", str(vkey_file), "--receipt", str(receipt)]
    status, out = run([*verify, "--url", url])
    assert status == 0, capsys.readouterr().err
    assert f"verified: entry 4 is in the log of size 5 ({ORIGIN}) (entry read from {url})" in out
    # a receipt altered to name another entry: the log's entry 3 is not what it proves
    receipt.write_text(str(appended[4]["receipt"]).replace("index 4\n", "index 3\n", 1))
    assert run([*verify, "--url", url])[0] == 1
    assert f"entry 3 as the log at {url} holds it is not the entry" in capsys.readouterr().err
    receipt.write_text(str(appended[4]["receipt"]).replace("index 4\n", "index 99\n", 1))
    assert run([*verify, "--url", url])[0] == 1
    assert "GET /leaves/99 answered 400" in capsys.readouterr().err
    # one of --entry and --url is needed
    with pytest.raises(SystemExit):
        run(verify)
    assert "one of the arguments --entry --url is required" in capsys.readouterr().err


def test_entries_and_export_over_http_and_db(
    server: tuple[str, Path],
    vkey_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, db = server
    monkeypatch.setenv("AUDIT_LOG_TOKEN", TOKEN)
    _post(url, 12)
    pro = hex_id("pro", 1)
    remote = ["--url", url, "--vkey", str(vkey_file)]
    status, out = run(["entries", *remote, "--professional", pro])
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in lines] == [1, 4, 7, 10]
    assert "verified 4 entries against the checkpoint of size 12" in capsys.readouterr().err
    status, out = run(["entries", "--db", f"sqlite:///{db}", "--decision", "refused"])
    assert [json.loads(line)["index"] for line in out.splitlines()] == [0, 4, 8]
    target = tmp_path / "march.csv"
    argv = ["export", *remote, "--from", "2026-03-02T10:05:00Z", "--to", "2026-03-02T10:08Z"]
    assert run([*argv, "--format", "csv", "--out", str(target)])[0] == 0
    rows = target.read_text().splitlines()
    assert rows[0].startswith("index,logged_at,type,time,")
    assert [r.split(",")[0] for r in rows[1:]] == ["5", "6", "7"]
    status, out = run(["entries", *remote, "--limit", "2"])
    assert len(out.splitlines()) == 2
    # A full export recomputes the root from every leaf.
    status, out = run(["export", *remote])
    assert status == 0
    assert [json.loads(line)["index"] for line in out.splitlines()] == list(range(12))
    assert "tree root recomputed" in capsys.readouterr().err
    # Unverifiable: no pinned key, or no token.
    assert run(["entries", "--url", url])[0] == 1
    assert "--url needs --vkey" in capsys.readouterr().err
    monkeypatch.delenv("AUDIT_LOG_TOKEN")
    assert run(["entries", *remote])[0] == 1


# -- verify-db against tampering -------------------------------------------------


@pytest.fixture
def log_db(tmp_path: Path, signer: NoteSigner) -> Path:
    path = tmp_path / "log.db"
    with AuditLog.open(str(path), signer) as log:
        entries = mixed_entries(20, seed=5)
        log.append_many(entries[:10])
        log.checkpoint()
        log.append_many(entries[10:])
        log.checkpoint()
    return path


def _raw(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    for table in ("entries", "checkpoints"):
        for action in ("update", "delete"):
            connection.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    return connection


def _change(raw: sqlite3.Connection) -> None:
    (data,) = raw.execute("SELECT leaf_data FROM entries WHERE idx = 6").fetchone()
    raw.execute("UPDATE entries SET leaf_data = ? WHERE idx = 6", (data.replace(b"2026", b"2025"),))


def _change_as_text(raw: sqlite3.Connection) -> None:
    # SQLite's replace() on a BLOB yields TEXT: the column changes type too.
    raw.execute("UPDATE entries SET leaf_data = replace(leaf_data, '2026', '2025') WHERE idx = 6")


def _delete(raw: sqlite3.Connection) -> None:
    raw.execute("DELETE FROM entries WHERE idx = 6")


def _reorder(raw: sqlite3.Connection) -> None:
    rows = {
        i: (d, h)
        for i, d, h in raw.execute(
            "SELECT idx, leaf_data, leaf_hash FROM entries WHERE idx IN (6, 9)"
        )
    }
    for a, b in ((6, 9), (9, 6)):
        raw.execute("UPDATE entries SET leaf_data = ?, leaf_hash = ? WHERE idx = ?", (*rows[b], a))


def _truncate(raw: sqlite3.Connection) -> None:
    raw.execute("DELETE FROM entries WHERE idx >= 6")


def _replace_checkpoint(raw: sqlite3.Connection) -> None:
    other = NoteSigner.from_seed(ORIGIN, bytes(32))
    note = sign_checkpoint(Checkpoint(ORIGIN, 10, hashlib.sha256(b"x").digest()), other)
    raw.execute("UPDATE checkpoints SET note = ? WHERE size = 10", (note,))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_change, "entry 6: leaf data does not match"),
        (_change_as_text, "entry 6: column leaf_data holds str, not bytes"),
        (_delete, "entry 6 is missing"),
        (_reorder, "entry 6: the leaf records index 9"),
        (_truncate, "first missing index 6"),
        (_replace_checkpoint, "checkpoint of size 10 does not verify"),
    ],
    ids=["change", "change-as-text", "delete", "reorder", "truncate", "replace-checkpoint"],
)
def test_verify_db_detects_tampering(
    log_db: Path,
    vkey_file: Path,
    tamper: Callable[[sqlite3.Connection], None],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["verify-db", "--db", f"sqlite:///{log_db}", "--vkey", str(vkey_file)]
    status, out = run(argv)
    assert status == 0
    assert "verified: 20 entries" in out
    with _raw(log_db) as raw:
        tamper(raw)
    status, out = run(argv)
    assert status == 1
    assert message in capsys.readouterr().err
    assert "verified" not in out


def test_verify_db_with_state_catches_a_hidden_truncation(
    log_db: Path, vkey_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "seen"
    with _raw(log_db) as raw:
        (note,) = raw.execute("SELECT note FROM checkpoints WHERE size = 20").fetchone()
        state.write_text(note)
        raw.execute("DELETE FROM entries WHERE idx >= 15")
        raw.execute("DELETE FROM checkpoints WHERE size = 20")
    argv = ["verify-db", "--db", f"sqlite:///{log_db}", "--vkey", str(vkey_file)]
    assert run(argv)[0] == 0
    assert run([*argv, "--state", str(state)])[0] == 1
    assert "first missing index 15" in capsys.readouterr().err


def test_export_refuses_corrupt_leaves(log_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _raw(log_db) as raw:
        raw.execute("UPDATE entries SET leaf_data = X'7b7d' WHERE idx = 2")
    assert run(["export", "--db", f"sqlite:///{log_db}"])[0] == 1
    assert "invalid leaf record" in capsys.readouterr().err
    assert parse_leaf  # imported for the leaf format used above
