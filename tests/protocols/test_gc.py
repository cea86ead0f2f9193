import gc

import pytest

from protocols import gc_paused


@pytest.fixture(autouse=True)
def _collector_enabled():
    gc.enable()
    yield
    gc.enable()


def test_the_collector_is_paused_inside_and_enabled_after():
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_is_enabled_again_after_an_error():
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_nested_blocks_leave_it_paused_until_the_outermost_ends():
    with gc_paused():
        with gc_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_by_the_caller_stays_disabled():
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_as_a_decorator_each_call_runs_paused():
    seen = []

    @gc_paused()
    def work(n: int) -> int:
        seen.append(gc.isenabled())
        return n * 2

    assert work(2) == 4
    assert work(3) == 6
    assert seen == [False, False]
    assert gc.isenabled()
