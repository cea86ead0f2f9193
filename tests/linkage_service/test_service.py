"""The apply's helpers in ``linkage_service._service``: the write thread and the fast JSON."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from linkage_service._service import _dumps, _dumps_fast, _token_json, _Writer


@pytest.mark.parametrize("threaded", [True, False])
def test_writer_runs_writes_in_order_off_the_callers_thread(threaded):
    done: list[tuple[int, bool]] = []
    main = threading.get_ident()
    with _Writer(threaded) as writer:
        for k in range(10):
            writer.put(lambda k: done.append((k, threading.get_ident() != main)), k)
        writer.finish()
    assert done == [(k, threaded) for k in range(10)]


@pytest.mark.parametrize("threaded", [True, False])
def test_writer_reraises_the_first_failure_and_skips_the_rest(threaded):
    done: list[int] = []

    def write(k: int) -> None:
        if k == 2:
            raise ValueError("write 2 failed")
        done.append(k)

    with _Writer(threaded) as writer:
        with pytest.raises(ValueError, match="write 2 failed"):
            for k in range(5):
                writer.put(write, k)
            writer.finish()
    assert done == [0, 1]


def test_writer_waits_for_its_thread_when_the_caller_fails():
    # the caller's error leaves the block only once no write is running (then it rolls back)
    release = threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        release.wait(5)
        finished.append(True)

    with pytest.raises(RuntimeError, match="caller"):
        with _Writer() as writer:
            writer.put(slow)
            threading.Timer(0.05, release.set).start()
            raise RuntimeError("caller")
    assert finished == [True]


def test_fast_json_reads_back_as_the_standard_encoder_wrote_it():
    evidence = {
        "probability": 0.987654321,
        "dice": np.float64(0.8125),
        "tokens_agreed": ("nhs_number",),
        "tokens_conflicting": [],
        "sex_disagrees": False,
        "birth_year_gap": None,
        "blocking_keys_agreed": np.int64(3),
        "levels": np.array([1, 2, 3]),
        "names": {"b", "a"},
        "comparisons": {"person": {"level": "dice>=0.9", "weight": -1.5e-05}},
        "text": "naïve ✓",
    }
    assert json.loads(_dumps_fast(evidence)) == json.loads(_dumps(evidence))
    tokens = {"nhs_number": bytes(range(24)), "id:case": b"\xff" * 24}
    assert json.loads(_token_json(tokens)) == json.loads(
        json.dumps({k: v.hex() for k, v in tokens.items()})
    )
    assert _token_json({}) == "{}"
