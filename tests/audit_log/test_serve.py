"""End to end with real processes: ``audit-log serve`` behind ``audit-log witness serve``.

Both servers run as subprocesses on free loopback ports, exactly as an operator
starts them; the test appends as the writer, the witness cosigns, and the IG
officer's CLI verifies checkpoints, consistency, receipts and entries.
Every process is killed in a ``finally`` and every wait has a deadline.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from audit_log._cli import main

from ._factories import T0, hex_id, make_entry

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "audit.example.gov.uk/log"
WITNESS = "ig.example.gov.uk/witness"
STARTUP_SECONDS = 30


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, stdout=out), out.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def token_file(path: Path, lines: dict[str, str]) -> Path:
    path.write_text(
        "".join(f"{hashlib.sha256(t.encode()).hexdigest()} {role}\n" for t, role in lines.items())
    )
    path.chmod(0o600)
    return path


@contextmanager
def process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m audit_log argv``; always kill it on the way out."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audit_log", *argv],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=os.environ | (env or {}),
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_until_up(
    proc: subprocess.Popen[bytes], log: Path, url: str, path: str, method: str = "GET"
) -> None:
    """Poll until the server answers anything at all (or fail with its output)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            httpx.request(method, url + path, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} did not start in {STARTUP_SECONDS}s:\n{log.read_text()}")
            time.sleep(0.1)


def test_log_and_witness_processes_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log_key, witness_key = tmp_path / "log.key", tmp_path / "witness.key"
    status, log_vkey = run(["keygen", "--name", ORIGIN, "--out", str(log_key)])
    assert status == 0
    status, witness_vkey = run(["witness", "keygen", "--name", WITNESS, "--out", str(witness_key)])
    assert status == 0
    log_vkey, witness_vkey = log_vkey.strip(), witness_vkey.strip()
    log_tokens = token_file(tmp_path / "log.tokens", {"w": "writer", "ig": "ig_officer"})
    witness_tokens = token_file(tmp_path / "witness.tokens", {"log-to-witness": "writer"})
    witness_state = tmp_path / "witness.state"
    witness_port, log_port = free_port(), free_port()
    witness_url, log_url = f"http://127.0.0.1:{witness_port}", f"http://127.0.0.1:{log_port}"

    witness_argv = [
        "witness", "serve", "--key", str(witness_key), "--state", str(witness_state),
        "--log-vkey", log_vkey, "--tokens", str(witness_tokens), "--port", str(witness_port),
    ]  # fmt: skip
    log_argv = [
        "serve", "--db", f"sqlite:///{tmp_path / 'log.db'}", "--key", str(log_key),
        "--tokens", str(log_tokens), "--port", str(log_port),
        "--witness", witness_url, witness_vkey, "--checkpoint-interval", "0.1",
        "--max-unlocks", "2", "--working-hours", "9-17", "--timezone", "UTC",
        "--break-glass-review-days", "3",
    ]  # fmt: skip
    with (
        process(witness_argv, tmp_path / "witness.out") as witness,
        process(
            log_argv, tmp_path / "log.out", {"AUDIT_LOG_WITNESS_TOKEN": "log-to-witness"}
        ) as log,
    ):
        wait_until_up(witness, tmp_path / "witness.out", witness_url, "/add-checkpoint", "POST")
        wait_until_up(log, tmp_path / "log.out", log_url, "/checkpoint")

        # The writer appends; each answer carries a receipt cosigned by the witness.
        pro = hex_id("pro", 42)
        answers = []
        with httpx.Client(base_url=log_url, headers={"Authorization": "Bearer w"}) as writer:
            for n in range(3):
                entry = make_entry("decision", n + 1, professional_id=pro, decision="granted")
                response = writer.post("/entries", json=entry.model_dump(mode="json"))
                assert response.status_code == 201, response.text
                answers.append(response.json())
            late = make_entry("decision", 9, time=T0.replace(hour=20))
            assert writer.post("/entries", json=late.model_dump(mode="json")).status_code == 201
            # The writer may not read the review API.
            assert writer.get("/entries").status_code == 403
        assert json.loads(witness_state.read_text())["logs"][ORIGIN]["size"] >= 3

        monkeypatch.setenv("AUDIT_LOG_TOKEN", "ig")
        state = tmp_path / "ig.state"
        check = ["checkpoint", "--url", log_url, "--vkey", log_vkey, "--state", str(state)]
        status, out = run([*check, "--witness-vkey", witness_vkey])
        assert status == 0, capsys.readouterr().err
        assert "verified checkpoint of size 4 (first checkpoint seen)" in out

        receipt, leaf = tmp_path / "receipt", tmp_path / "leaf.json"
        receipt.write_text(answers[1]["receipt"])
        leaf.write_text(answers[1]["leaf"])
        status, out = run(
            ["verify-receipt", "--vkey", log_vkey, "--witness-vkey", witness_vkey,
             "--receipt", str(receipt), "--entry", str(leaf)]
        )  # fmt: skip
        assert status == 0, capsys.readouterr().err
        assert f"entry 1 is in the log of size 2 ({ORIGIN}), cosigned by {WITNESS}" in out

        with httpx.Client(base_url=log_url, headers={"Authorization": "Bearer w"}) as writer:
            more = make_entry("break_glass", 10, time=T0.replace(day=1))
            assert writer.post("/entries", json=more.model_dump(mode="json")).status_code == 201
        status, out = run([*check, "--witness-vkey", witness_vkey])
        assert status == 0, capsys.readouterr().err
        assert "verified checkpoint of size 5 (consistent with size 4)" in out

        remote = ["--url", log_url, "--vkey", log_vkey, "--witness-vkey", witness_vkey]
        status, out = run(["entries", *remote, "--professional", pro])
        assert status == 0, capsys.readouterr().err
        assert [json.loads(line)["index"] for line in out.splitlines()] == [0, 1, 2]
        status, out = run(["export", *remote, "--format", "csv"])
        assert status == 0
        assert len(out.splitlines()) == 1 + 5

        # The anomaly flags given to serve are the ones the report uses.
        with httpx.Client(base_url=log_url, headers={"Authorization": "Bearer ig"}) as ig:
            report = ig.get("/reports/anomalies").json()["anomalies"]
        kinds = {a["kind"]: a for a in report}
        assert "(limit 2)" in kinds["unlocks_over_limit"]["detail"]
        assert kinds["outside_working_hours"]["indices"] == [3]
        assert "no review after 3 days" in kinds["break_glass_unreviewed"]["detail"]

        # A database copy verifies too, and the state pins the checkpoint seen.
        status, out = run(
            ["verify-db", "--db", f"sqlite:///{tmp_path / 'log.db'}", "--vkey", log_vkey,
             "--state", str(state)]
        )  # fmt: skip
        assert status == 0, capsys.readouterr().err
        assert "verified: 5 entries" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--working-hours", "18-8"], "working_hours"),
        (["--working-hours", "nine"], "is not START-END"),
        (["--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--working-days", "mon-sun,funday"], "use day names"),
        (["--max-unlocks", "-1"], "max_unlocks_per_period"),
    ],
)
def test_serve_refuses_bad_anomaly_flags(
    tmp_path: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = token_file(tmp_path / "tokens", {"t": "reader"})
    argv = ["serve", "--db", str(tmp_path / "x.db"), "--tokens", str(tokens), *flags]
    try:
        status: object = run(argv)[0]
    except SystemExit as exc:  # argparse rejects unparseable values itself, with status 2
        status = exc.code
    assert status in (1, 2)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
