"""The compiled Dice kernel against the numpy oracle, on every body this CPU runs.

Each function of :mod:`linkage_service._kernel` is cross-checked bit for bit
against :mod:`linkage_service._kernel_ref` on seeded random filters of 1, 2, 16,
17 and 32 words (16 and 32 take the fixed-width fast paths, 17 the masked tail),
on empty and all-ones filters, at thresholds exactly equal to a score (>= keeps
it, the next float up drops it), and under Hypothesis for small sizes. Bad
inputs must raise ValueError naming the argument.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from linkage_service import _kernel, _kernel_ref

IMPLS = _kernel.implementations()
WORDS = [1, 2, 16, 17, 32]
Filters = npt.NDArray[np.uint64]


@pytest.fixture
def make_filters() -> Callable[[int, int, int], Filters]:
    """Factory: ``(rows, words, seed)`` -> seeded random filters, about half the bits set."""

    def make(rows: int, words: int, seed: int) -> Filters:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 2**64, size=(rows, words), dtype=np.uint64)

    return make


def same_bits(x: npt.NDArray[np.generic], y: npt.NDArray[np.generic]) -> bool:
    """Equal dtype, shape and bytes: float results must match exactly, not approximately."""
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def assert_above_equal(a: Filters, b: Filters, threshold: float, impl: str) -> int:
    """dice_above agrees with the reference; returns the number of hits."""
    got = _kernel.dice_above(a, b, threshold, impl=impl)
    want = _kernel_ref.dice_above(a, b, threshold)
    for g, w in zip(got, want, strict=True):
        assert same_bits(g, w), (threshold, impl)
    return int(want[0].shape[0])


def test_default_is_the_fastest_available() -> None:
    assert IMPLS[-1] == "portable"
    a = np.ones((3, 16), dtype=np.uint64)
    assert same_bits(_kernel.popcounts(a), _kernel.popcounts(a, impl=IMPLS[0]))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("words", WORDS)
def test_popcounts_random(make_filters, impl: str, words: int) -> None:
    f = make_filters(257, words, words)
    assert same_bits(_kernel.popcounts(f, impl=impl), _kernel_ref.popcounts(f))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("words", WORDS)
def test_dice_pairs_random(make_filters, impl: str, words: int) -> None:
    a, b = make_filters(40, words, 1), make_filters(30, words, 2)
    rng = np.random.default_rng(3)
    # Many pairs (row counts precomputed) and few pairs (counted per pair).
    for k in (500, 7, 0):
        ia = rng.integers(0, 40, size=k, dtype=np.int64)
        ib = rng.integers(0, 30, size=k, dtype=np.int64)
        got = _kernel.dice_pairs(a, b, ia, ib, impl=impl)
        assert same_bits(got, _kernel_ref.dice_pairs(a, b, ia, ib))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("words", WORDS)
def test_dice_above_random(make_filters, impl: str, words: int) -> None:
    # 37 columns: not a multiple of the 4-row blocks of the SIMD loop.
    a, b = make_filters(23, words, 4), make_filters(37, words, 5)
    scores = _kernel_ref.dice_pairs(a, b, np.repeat(np.arange(23), 37), np.tile(np.arange(37), 23))
    for threshold in (0.0, 0.5, float(np.median(scores)), float(scores.max()), 1.0, 2.0):
        assert_above_equal(a, b, threshold, impl)
    assert assert_above_equal(a, b, 0.0, impl) == 23 * 37


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("words", WORDS)
def test_empty_and_full_filters(impl: str, words: int) -> None:
    zeros = np.zeros((3, words), dtype=np.uint64)
    ones = np.full((5, words), np.uint64(2**64 - 1), dtype=np.uint64)
    both = np.concatenate([zeros, ones])
    assert same_bits(_kernel.popcounts(both, impl=impl), _kernel_ref.popcounts(both))
    ia = np.repeat(np.arange(8), 8)
    ib = np.tile(np.arange(8), 8)
    got = _kernel.dice_pairs(both, both, ia, ib, impl=impl)
    assert same_bits(got, _kernel_ref.dice_pairs(both, both, ia, ib))
    # Two empty filters score 0.0, not NaN; two full ones score exactly 1.0.
    assert got[0] == 0.0 and got[-1] == 1.0
    for threshold in (-1.0, 0.0, 1.0, float("nan"), float("inf"), float("-inf")):
        assert_above_equal(both, both, threshold, impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("words", [16, 17])
def test_threshold_equality_is_kept(impl: str, words: int) -> None:
    # Hand-made scores: 2*2/(3+4) = 4/7 and 2*1/(3+3) = 1/3 against a[0] = 0b111,
    # and 2*1/(1+2) = 2/3 in the last word (the tail for 17 words).
    a = np.zeros((2, words), dtype=np.uint64)
    b = np.zeros((9, words), dtype=np.uint64)
    a[0, 0] = 0b111
    b[0, 0] = 0b11011  # overlap 0b11: 4/7
    b[2, 0] = 0b11000  # no overlap: 0.0
    b[3, 0] = 0b11001  # overlap 0b1: 2/6
    b[4:, 0] = 0b110011  # overlap 0b11: 4/7, five times (crosses a 4-row block)
    a[1, -1], b[1, -1] = 0b1, 0b11  # 2/3
    for score in (4 / 7, 2 / 3, 2 / 6):
        for threshold, kept in ((score, True), (float(np.nextafter(score, 2.0)), False)):
            i, j, s = _kernel.dice_above(a, b, threshold, impl=impl)
            assert (score in s.tolist()) is kept
            assert_above_equal(a, b, threshold, impl)


@given(
    words=st.integers(0, 40),
    na=st.integers(0, 9),
    nb=st.integers(0, 9),
    data=st.data(),
)
@settings(max_examples=150, deadline=None)
def test_property_matches_reference(words: int, na: int, nb: int, data: st.DataObject) -> None:
    # Sparse and dense bits alike: draw words from a mix of small and full-range values.
    elems = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))
    a = data.draw(hnp.arrays(np.uint64, (na, words), elements=elems))
    b = data.draw(hnp.arrays(np.uint64, (nb, words), elements=elems))
    k = data.draw(st.integers(0, 12)) if na and nb else 0
    ia = np.array(data.draw(st.lists(st.integers(0, max(na - 1, 0)), min_size=k, max_size=k)))
    ib = np.array(data.draw(st.lists(st.integers(0, max(nb - 1, 0)), min_size=k, max_size=k)))
    ia, ib = ia.astype(np.int64), ib.astype(np.int64)
    scores = _kernel_ref.dice_pairs(a, b, ia, ib)
    threshold = data.draw(
        st.one_of(st.sampled_from(scores.tolist() or [0.5]), st.floats(-0.5, 1.5))
    )
    for impl in IMPLS:
        assert same_bits(_kernel.popcounts(a, impl=impl), _kernel_ref.popcounts(a))
        assert same_bits(_kernel.dice_pairs(a, b, ia, ib, impl=impl), scores)
        assert_above_equal(a, b, threshold, impl)


def test_threads_agree(make_filters) -> None:
    a, b = make_filters(200, 16, 6), make_filters(300, 16, 7)
    want = _kernel_ref.dice_above(a, b, 0.55)
    results: dict[int, tuple[npt.NDArray[np.generic], ...]] = {}

    def run(lo: int) -> None:
        results[lo] = _kernel.dice_above(a[lo : lo + 100], b, 0.55)

    threads = [threading.Thread(target=run, args=(lo,)) for lo in (0, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got_i = np.concatenate([results[0][0], results[100][0] + 100])
    got_s = np.concatenate([results[0][2], results[100][2]])
    assert same_bits(got_i, want[0]) and same_bits(got_s, want[2])


def test_results_are_writable_arrays(make_filters) -> None:
    a = make_filters(4, 16, 8)
    i, j, s = _kernel.dice_above(a, a, 0.0)
    i[0] = j[0] = 7
    s[0] = 0.25


# ---- bad inputs -------------------------------------------------------------


def test_index_out_of_bounds(make_filters) -> None:
    a, b = make_filters(4, 16, 9), make_filters(5, 16, 10)
    ok = np.array([0, 1], dtype=np.int64)
    with pytest.raises(ValueError, match=r"ia\[1\] = 4 is out of bounds for a with 4 rows"):
        _kernel.dice_pairs(a, b, np.array([0, 4], dtype=np.int64), ok)
    with pytest.raises(ValueError, match=r"ib\[0\] = 5 is out of bounds for b with 5 rows"):
        _kernel.dice_pairs(a, b, ok, np.array([5, 0], dtype=np.int64))
    # No negative wrap-around, unlike numpy fancy indexing.
    with pytest.raises(ValueError, match=r"ia\[0\] = -1 is out of bounds"):
        _kernel.dice_pairs(a, b, np.array([-1, 0], dtype=np.int64), ok)
    with pytest.raises(ValueError, match="ib: has 1 entries, ia has 2"):
        _kernel.dice_pairs(a, b, ok, ok[:1])


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (np.zeros((3, 16), dtype=np.int64), "wrong dtype"),
        (np.zeros((3, 16), dtype=np.uint32), "wrong dtype"),
        (np.zeros((3, 16), dtype=">u8"), "wrong dtype"),
        (np.zeros(16, dtype=np.uint64), "wrong number of dimensions"),
        (np.zeros((2, 3, 16), dtype=np.uint64), "wrong number of dimensions"),
        (np.zeros((3, 32), dtype=np.uint64)[:, ::2], "not C-contiguous"),
        (np.zeros((16, 3), dtype=np.uint64).T, "not C-contiguous"),
    ],
)
def test_bad_filters_are_named(bad: Any, why: str) -> None:
    good = np.zeros((3, 16), dtype=np.uint64)
    idx = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError, match=f"^filters: .*{why}"):
        _kernel.popcounts(bad)
    with pytest.raises(ValueError, match=f"^a: .*{why}"):
        _kernel.dice_above(bad, good, 0.5)
    with pytest.raises(ValueError, match=f"^b: .*{why}"):
        _kernel.dice_above(good, bad, 0.5)
    with pytest.raises(ValueError, match=f"^b: .*{why}"):
        _kernel.dice_pairs(good, bad, idx, idx)


def test_bad_other_arguments() -> None:
    f16 = np.zeros((3, 16), dtype=np.uint64)
    f32 = np.zeros((3, 32), dtype=np.uint64)
    idx = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="b: has 32 words per row, a has 16"):
        _kernel.dice_above(f16, f32, 0.5)
    with pytest.raises(ValueError, match="b: has 32 words per row, a has 16"):
        _kernel.dice_pairs(f16, f32, idx, idx)
    with pytest.raises(ValueError, match="^ia: .*wrong dtype"):
        _kernel.dice_pairs(f16, f16, idx.astype(np.int32), idx)
    with pytest.raises(ValueError, match="^ib: .*wrong number of dimensions"):
        _kernel.dice_pairs(f16, f16, idx, idx.reshape(1, 2))
    with pytest.raises(ValueError, match="^filters: expected a numpy array, got list"):
        _kernel.popcounts([[1, 2]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^a: expected .* got list"):
        _kernel.dice_above([[1]], f16, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="impl: unknown implementation 'sse9'"):
        _kernel.popcounts(f16, impl="sse9")


@given(
    words=st.integers(0, 20),
    rows=st.integers(1, 12),
    data=st.data(),
)
@settings(max_examples=150, deadline=None)
def test_dice_all_at_least_matches_reference(words: int, rows: int, data: st.DataObject) -> None:
    # The cohesion check: every cross pair at or above the floor, the same doubles as
    # dice_pairs (so a floor equal to a pair's score keeps it).
    elems = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))
    f = data.draw(hnp.arrays(np.uint64, (rows, words), elements=elems))
    ra = data.draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=6))
    rb = data.draw(st.lists(st.integers(0, rows - 1), min_size=1, max_size=6))
    ia = np.repeat(np.asarray(ra, dtype=np.int64), len(rb))
    ib = np.tile(np.asarray(rb, dtype=np.int64), len(ra))
    scores = _kernel_ref.dice_pairs(f, f, ia, ib).tolist()
    floor = data.draw(st.one_of(st.sampled_from(scores), st.floats(-0.5, 1.5)))
    want = _kernel_ref.dice_all_at_least(f, ra, rb, floor)
    assert want == all(s >= floor for s in scores)
    assert _kernel.dice_all_at_least(f, ra, rb, floor) is want


def test_dice_all_at_least_large_clusters_and_bad_rows(make_filters) -> None:
    f = make_filters(600, 16, 11)
    f[300:] = f[0]  # 300 copies of one filter: every pair among them scores 1.0
    copies = list(range(300, 600))
    assert _kernel.dice_all_at_least(f, copies, [0], 1.0)  # beyond the C buffers
    assert not _kernel.dice_all_at_least(f, copies, [1], 0.9)
    assert _kernel.dice_all_at_least(f, copies[:5], copies[5:9], 1.0)
    with pytest.raises(ValueError, match=r"rows_b\[1\] = 600 is out of bounds for 600 rows"):
        _kernel.dice_all_at_least(f, [0], [1, 600], 0.5)
    with pytest.raises(ValueError, match=r"rows_a\[0\] = -1 is out of bounds"):
        _kernel.dice_all_at_least(f, [-1], [1], 0.5)
    with pytest.raises(ValueError, match="^filters: .*wrong dtype"):
        _kernel.dice_all_at_least(f.astype(np.int64), [0], [1], 0.5)
