"""A background thread that runs one task every few seconds until stopped.

Services use it for housekeeping beside their HTTP app (signing audit
checkpoints, forgetting old nonces): started in the app's lifespan, stopped
when it ends. The task decides what its own failures mean: it returns False to
stop the thread, anything else to keep going.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Periodic"]


class Periodic:
    """Runs ``task`` every ``interval`` seconds in a thread named ``name``."""

    def __init__(self, name: str, interval: float, task: Callable[[], bool | None]) -> None:
        self._interval = interval
        self._task = task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread (the first run is one interval from now)."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for it (a running task finishes first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._task() is False:
                return
