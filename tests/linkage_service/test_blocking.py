"""Blocking invariants: identical filters always meet, only pairs with a new row, bounded blocks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage_service import _blocking_ref as ref
from linkage_service._blocking import (
    band_positions,
    block_codes,
    block_order,
    block_pairs,
    decode_pairs,
    distinct,
    distinct_rows,
    lsh_signatures,
    threaded_map,
    token_codes,
    unique_pair_codes,
    unique_pairs,
)
from linkage_service._engine import LinkageEngine

from ._engine_helpers import Rec, base_bits, batch, filt


def test_band_positions_are_fixed_by_the_seed() -> None:
    a = band_positions(1024, 8, 20, 7)
    assert a.shape == (8, 20)
    assert (a == band_positions(1024, 8, 20, 7)).all()
    assert not (a == band_positions(1024, 8, 20, 8)).all()
    assert all(len(set(row.tolist())) == 20 for row in a)


def test_token_codes_missing_is_zero_and_present_is_not() -> None:
    codes = token_codes([None, b"\x00" * 12, b"abcdefghijkl", b"abcdefghXXXX"])
    assert codes[0] == 0
    assert (codes[1:] != 0).all()
    assert codes[2] == codes[3]  # the first eight bytes of a keyed token


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 5_000), min_size=2, max_size=30),
    st.integers(0, 2**31),
)
def test_identical_filters_always_share_a_block(seeds: list[int], which: int) -> None:
    # rows built from a few seeds, so many rows are exact copies of each other
    filters = np.stack([filt(base_bits(s % 7)) for s in seeds])
    present = np.ones(len(seeds), dtype=np.bool_)
    pos = band_positions(1024, 4, 24, which)
    sig = lsh_signatures(filters, pos, present)
    is_new = np.ones(len(seeds), dtype=np.bool_)
    parts = [block_pairs(sig[:, b], is_new, window=64) for b in range(4)]
    i, j = unique_pairs(parts, len(seeds))
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    for a in range(len(seeds)):
        for b in range(a + 1, len(seeds)):
            if seeds[a] % 7 == seeds[b] % 7:
                assert (a, b) in found


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=0, max_size=40),
    st.lists(st.booleans(), min_size=40, max_size=40),
    st.integers(1, 5),
)
def test_block_pairs_only_with_a_new_row_each_once(
    keys_: list[int], new: list[bool], window: int
) -> None:
    keys = np.array(keys_, dtype=np.uint64)
    is_new = np.array(new[: len(keys_)], dtype=np.bool_)
    i, j = block_pairs(keys, is_new, window)
    pairs = list(zip(i.tolist(), j.tolist(), strict=True))
    assert len(pairs) == len(set(pairs))
    for a, b in pairs:
        assert a < b
        assert keys[a] == keys[b] != 0
        assert is_new[a] or is_new[b]
    # small blocks are complete
    for a in range(len(keys_)):
        for b in range(a + 1, len(keys_)):
            same = keys[a] == keys[b] != 0 and (is_new[a] or is_new[b])
            block = int((keys == keys[a]).sum())
            if same and block <= window + 1:
                assert (a, b) in pairs


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=30), max_size=6)
)
def test_unique_pair_codes_are_the_sorted_union(parts_: list[list[tuple[int, int]]]) -> None:
    n = 30
    parts = [
        (np.array([a for a, _ in p], dtype=np.int64), np.array([b for _, b in p], dtype=np.int64))
        for p in parts_
    ]
    codes = unique_pair_codes(iter(parts), n)  # a generator of parts, as the engine passes
    expected = sorted({pair for p in parts_ for pair in p})
    assert codes.tolist() == [a * n + b for a, b in expected]
    i, j = decode_pairs(codes, n)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected
    ui, uj = unique_pairs(parts, n)
    assert (ui == i).all() and (uj == j).all()


def test_an_oversized_block_is_bounded_by_the_window() -> None:
    keys = np.full(1000, 5, dtype=np.uint64)
    i, _ = block_pairs(keys, np.ones(1000, dtype=np.bool_), window=10)
    assert i.size <= 1000 * 10


def test_engine_reports_blocking_stats_and_finds_exact_copies() -> None:
    recs = [Rec(k + 1, base_bits(k // 2), agency=k % 2) for k in range(40)]
    eng = LinkageEngine()
    delta = eng.update(batch(recs), [])
    assert delta.stats["candidate_pairs"] >= 20
    assert 0.0 < delta.stats["reduction_ratio"] <= 1.0
    i, j = eng.candidate_pairs(np.ones(40, dtype=np.bool_))
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert all((2 * k, 2 * k + 1) in found for k in range(20))


# The compiled blocking (lsh_signatures, block_order, block_pairs / block_codes)
# cross-checked against the numpy reference it replaced (_blocking_ref).


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 3), st.booleans(), st.booleans()), max_size=80
    ),
    st.integers(0, 6),
    st.sampled_from([1, 0x9E3779B97F4A7C15, 1 << 40]),
)
def test_compiled_blocking_matches_the_reference(
    rows_: list[tuple[int, int, bool, bool]], window: int, scale: int
) -> None:
    # keys and within scaled so that every 16-bit digit of the radix sort is exercised
    with np.errstate(over="ignore"):
        keys = np.array([k for k, _, _, _ in rows_], dtype=np.uint64) * np.uint64(scale)
        within = np.array([w for _, w, _, _ in rows_], dtype=np.uint64) * np.uint64(scale)
    is_new = np.array([x for _, _, x, _ in rows_], dtype=np.bool_)
    alive = np.array([x for _, _, _, x in rows_], dtype=np.bool_)
    for w in (None, within):
        for al in (None, alive):
            got, want = block_order(keys, al, w), ref.block_order(keys, al, w)
            assert got[0].tolist() == want[0].tolist()
            assert got[1].tolist() == want[1].tolist()
            gi, gj = block_pairs(keys, is_new, window, al, w)
            ri, rj = ref.block_pairs(keys, is_new, window, al, w)
            got_pairs = list(zip(gi.tolist(), gj.tolist(), strict=True))
            assert sorted(got_pairs) == sorted(zip(ri.tolist(), rj.tolist(), strict=True))
            codes = block_codes(keys, is_new, window, al, w)
            assert sorted(codes.tolist()) == sorted(a * len(rows_) + b for a, b in got_pairs)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 60), st.integers(1, 56), st.integers(0, 2**31), st.integers(1, 3))
def test_compiled_signatures_match_the_reference(n: int, bits: int, seed: int, bands: int) -> None:
    rng = np.random.default_rng(seed)
    filters = rng.integers(0, 2**63, size=(n, 16), dtype=np.int64).astype(np.uint64)
    filters[: n // 3] |= np.uint64(1 << 63)
    present = rng.random(n) < 0.8
    pos = band_positions(1024, bands, bits, seed)
    got = lsh_signatures(filters, pos, present)
    assert got.tolist() == ref.lsh_signatures(filters, pos, present).tolist()


def test_signatures_refuse_more_than_56_bits_a_band() -> None:
    with pytest.raises(ValueError, match="56 bits"):
        lsh_signatures(
            np.zeros((2, 16), np.uint64), band_positions(1024, 1, 57, 1), np.ones(2, bool)
        )


@pytest.mark.parametrize("threads", [0, 1, 2, 5])
def test_threaded_map_keeps_the_order_and_takes_few_items_ahead(threads: int) -> None:
    drawn: list[int] = []

    def items():
        for k in range(40):
            drawn.append(k)
            yield k

    got = []
    for r in threaded_map(lambda k: k * k, items(), threads):
        # never more than `threads` items taken beyond the results handed out
        assert len(drawn) - len(got) <= max(threads, 1)
        got.append(r)
    assert got == [k * k for k in range(40)]


def test_threaded_map_raises_what_a_call_raises() -> None:
    def fail(k: int) -> int:
        if k == 3:
            raise ValueError("call 3 failed")
        return k

    with pytest.raises(ValueError, match="call 3 failed"):
        list(threaded_map(fail, range(10), 2))


def test_distinct_helpers_answer_as_np_unique() -> None:
    rng = np.random.default_rng(11)
    values = rng.integers(-5, 300, 4000)
    assert np.array_equal(distinct(values), np.unique(values))
    rows = rng.integers(0, 300, 4000)
    assert np.array_equal(distinct_rows(rows, 300), np.unique(rows))
    empty = np.zeros(0, dtype=np.int64)
    assert distinct(empty).size == 0
    assert distinct_rows(empty, 10).size == 0
    assert not np.array_equal(values, np.sort(values))  # distinct sorted a copy
