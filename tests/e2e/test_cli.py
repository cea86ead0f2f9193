"""The README's main command and the local run, as a user runs them: console scripts.

``family-linkage demo`` twice in one directory (the second run reuses the keys
and must succeed too), and ``family-linkage up`` stopped with Ctrl-C (SIGINT):
every service process it started is gone afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from .conftest import console_script, run_cli


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0): look at its state
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _pids(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"\bpid (\d+)", text)]


def test_the_demo_runs_twice_and_leaves_nothing_running(tmp_path):
    run = tmp_path / "demo-run"
    first = run_cli("family-linkage", "demo", "--dir", str(run), "--households", "400")
    assert first.returncode == 0, first.stdout + first.stderr
    for step in ("[1/9] keys", "[5/9] push + link", "[7/9] unlock", "[8/9] verify", "[9/9] web"):
        assert step in first.stdout
    assert "GRANTED" in first.stdout and "cosigned by family-linkage/ig-witness" in first.stdout
    assert "signed in as coordinator" in first.stdout
    assert "stopped all 4 services cleanly" in first.stdout
    second = run_cli("family-linkage", "demo", "--dir", str(run), "--households", "400")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "keys are reused" in second.stdout and "none replaced" in second.stdout
    assert "first checkpoint seen" in second.stdout  # a fresh log, verified afresh
    pids = _pids(first.stdout) + _pids(second.stdout)
    assert len(pids) == 8 and not any(_alive(p) for p in pids)


# SIGINT at its default, as in a terminal, then the command. A shell starts a
# background job (``pytest ... &``) with SIGINT ignored, the command would inherit
# that, and Python raises no KeyboardInterrupt for an ignored signal. (A disposition
# set to the default survives exec; preexec_fn is not safe beside threads.)
_CTRL_C_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_up_serves_until_ctrl_c_then_stops_every_service(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_DEFAULT, console_script("family-linkage"), "up"]
        + ["--dir", str(tmp_path / "local-run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C stops them all"):
                break
        pids = _pids("".join(lines))
        assert len(pids) == 4 and all(_alive(p) for p in pids), "".join(lines)
        assert "web pages: http://127.0.0.1:" in "".join(lines)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0, "".join(lines) + rest
    assert "stopped all 4 services cleanly" in rest
    assert not any(_alive(p) for p in pids)
