"""Crash safety: SIGKILL a writer mid-append; every acknowledged entry survives and verifies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit_log import _store
from audit_log._entries import parse_leaf
from audit_log._log import AuditLog, verify_database
from audit_log._note import NoteSigner

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "audit.example.gov.uk/log"


def _run_and_kill(url: str, skey: Path, acks_before_kill: int) -> set[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.audit_log._crash_writer", url, str(skey)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    acked: set[int] = set()
    deadline = time.monotonic() + 30
    try:
        for line in process.stdout:
            if line.strip().isdigit():
                acked.add(int(line))
            if len(acked) >= acks_before_kill or time.monotonic() > deadline:
                os.kill(process.pid, signal.SIGKILL)
                break
        # Lines already in the pipe were printed after their commit: they count.
        rest, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    acked.update(int(line) for line in rest.split() if line.isdigit())
    assert process.returncode == -signal.SIGKILL
    return acked


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sigkill_mid_append_loses_no_acknowledged_entry(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    signer = NoteSigner.from_seed(ORIGIN, bytes(range(32)))
    skey = tmp_path / "log.skey"
    skey.write_text(signer.skey)
    skey.chmod(0o600)
    # on PostgreSQL the session's database, emptied: other tests' logs may be in it
    url = (
        f"sqlite:///{tmp_path / 'crash.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("empty_postgres_url")
    )
    all_acked: set[int] = set()
    for kill_after in (150, 600):
        acked = _run_and_kill(url, skey, kill_after)
        assert acked, "the writer acknowledged nothing before it was killed"
        all_acked |= acked
        with AuditLog.open(url, signer) as log:  # refuses to start if the tree is bad
            assert log.size >= max(all_acked) + 1
            for index in sorted(all_acked)[-50:]:
                assert parse_leaf(log.leaf(index)).index == index
            log.checkpoint()
    engine = _store.open_engine(url)
    try:
        result = verify_database(engine, signer.verifier())
    finally:
        engine.dispose()
    assert all_acked <= set(range(result.size))
