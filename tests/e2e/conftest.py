"""A real local stack for end-to-end tests: three service processes on loopback.

``running_journey`` starts the stack in a fresh run directory, registers the
demo professionals, runs the whole journey once and yields a :class:`World`
for the tests of one module to share; the services are stopped (and, with
PostgreSQL, the run's databases dropped) when the module is done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy import DemoProfessional, Journey, LocalStack, drop_databases, run_journey

E2E_HOUSEHOLDS = 600
E2E_SEED = 20261121


@dataclass
class World:
    """A running stack and what the journey left behind."""

    stack: LocalStack
    journey: Journey
    pros: dict[str, DemoProfessional]


@contextmanager
def running_journey(
    run_dir: Path,
    *,
    households: int = E2E_HOUSEHOLDS,
    database_url_base: str | None = None,
    database_prefix: str = "family_linkage",
) -> Iterator[World]:
    """Start the stack, run the journey, yield, stop (and drop PostgreSQL databases)."""
    stack = LocalStack(
        run_dir, database_url_base=database_url_base, database_prefix=database_prefix
    )
    try:
        with stack:
            stack.ceremony()
            stack.prepare(fresh=True)
            pros = stack.register_professionals()
            stack.start()
            journey = run_journey(stack, pros, households=households, seed=E2E_SEED)
            yield World(stack, journey, {p.name: p for p in pros})
    finally:
        if database_url_base is not None:
            drop_databases(database_url_base, database_prefix)


def console_script(name: str) -> str:
    """The installed console script ``name`` beside this interpreter."""
    return str(Path(sys.executable).parent / name)


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a console script as a separate process; its output as text."""
    return subprocess.run(
        [console_script(argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def log_lines(path: Path) -> list[dict[str, object]]:
    """The JSON lines of a service log (other lines skipped)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # uvicorn's plain lines, or a console exporter's pretty-printed spans
        if isinstance(record, dict):
            out.append(record)
    return out


def wait_for_log(path: Path, predicate, timeout: float = 5.0) -> list[dict[str, object]]:
    """The log's JSON lines once one satisfies ``predicate`` (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log_lines(path)
        if any(predicate(line) for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)
