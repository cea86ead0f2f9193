"""The housekeeping thread: runs its task on schedule, stops on request or when told."""

from __future__ import annotations

import threading

from service_common import Periodic


def test_runs_until_stopped():
    ran = threading.Semaphore(0)
    job = Periodic("test-periodic", 0.01, lambda: ran.release())
    job.start()
    assert all(ran.acquire(timeout=5) for _ in range(3))
    job.stop()
    assert not job._thread.is_alive()


def test_a_task_returning_false_stops_the_thread():
    calls: list[int] = []

    def task() -> bool:
        calls.append(1)
        return len(calls) < 2

    job = Periodic("test-periodic", 0.01, task)
    job.start()
    job._thread.join(timeout=5)
    assert not job._thread.is_alive() and len(calls) == 2
    job.stop()  # stopping a finished job is fine


def test_stop_before_start_is_harmless():
    Periodic("test-periodic", 1.0, lambda: None).stop()
