"""``report X | head``: a console script whose reader goes away ends quietly."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
from protocols import pipe_safe

@pipe_safe
def main() -> int:
    for i in range(1_000_000):
        print(f"row {i}")
    return 0

sys.exit(main())
"""


def test_a_closed_pipe_exits_141_without_a_traceback():
    shell = f"{sys.executable} -c '{PROGRAM}' | head -2; echo status ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["row 0", "row 1", "status 141"]
    assert done.stderr == ""


def test_a_normal_exit_is_unchanged():
    from protocols import pipe_safe

    assert pipe_safe(lambda: 3)() == 3
