"""Pair scores: the one-pair scorer used for cohesion equals the vectorised one."""

from __future__ import annotations

import numpy as np
import pytest

from linkage_service import _kernel as kernel
from linkage_service._scoring import (
    CohesionCheck,
    Features,
    birth_gap,
    birth_width,
    birth_years,
    pattern_array,
    score_pairs,
    score_pairs_above,
    score_pairs_chunked,
)

from ._engine_helpers import dice_model


def _features(rng: np.random.Generator, n: int) -> Features:
    """Random features with many agreements (few token values, shared addresses)."""
    bits = rng.random((n, 1024)) < rng.uniform(0.0, 0.7, (n, 1))
    clk = np.ascontiguousarray(np.packbits(bits, axis=1, bitorder="little").view("<u8"))
    clk = clk.astype(np.uint64)
    exact = rng.integers(0, 3, (n, 3)).astype(np.uint64)  # 0 = missing; few values: agreements
    sex = rng.integers(0, 3, n).astype(np.int8)
    birth = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(30, 33, n))
    # a third are age bands (the birth interval is 10 or 15 years wide)
    width = np.where(rng.random(n) < 0.33, rng.choice([9.0, 14.0], n), 0.0)
    keys = rng.integers(0, 3, (n, 4)).astype(np.uint64)
    abits = rng.random((n, 1024)) < 0.3
    addr = np.ascontiguousarray(np.packbits(abits, axis=1, bitorder="little").view("<u8"))
    addr = addr.astype(np.uint64)
    addr[: n // 2] = addr[n // 2 :]  # half the rows share an address with another
    has_addr = rng.random(n) < 0.8
    checked = np.array([True, True, False])  # two checked identifier types and a local one
    return Features(clk, exact, checked, sex, birth, width, keys, addr, has_addr)


def test_scores_in_slices_equal_scores_at_once() -> None:
    rng = np.random.default_rng(5)
    n = 300
    f = _features(rng, n)
    p = dice_model()
    i = rng.integers(0, n, 2000).astype(np.int64)
    j = rng.integers(0, n, 2000).astype(np.int64)
    s = score_pairs(f, i, j, p)
    chunked = score_pairs_chunked(f, i, j, p, chunk=300)
    assert (chunked.score == s.score).all() and (chunked.agree == s.agree).all()


@pytest.mark.parametrize("impl", kernel.implementations())
@pytest.mark.parametrize("keys", [4, 0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_patterns_equal_vector_patterns(seed: int, keys: int, impl: str) -> None:
    # each body of the compiled kernel this CPU runs (pattern_array, CohesionCheck)
    # against the numpy levels
    rng = np.random.default_rng(seed)
    n = 250
    f = _features(rng, n)
    f.keys = np.ascontiguousarray(f.keys[:, :keys])
    f.clk[n // 2 :] = f.clk[: n // 2]  # near-copies: the high Dice bands are reached
    i = rng.integers(0, n, 3000).astype(np.int64)
    j = rng.integers(0, n, 3000).astype(np.int64)
    s = score_pairs(f, i, j, dice_model())
    assert (pattern_array(f, i * n + j, n, chunk=999, impl=impl) == s.pattern).all()
    assert len(set(s.pattern.tolist())) > 50  # many levels of every comparison were met
    p = dice_model()
    for floor in (0.01, 0.5, 0.9):
        check = CohesionCheck(f, p, floor, impl)
        for _ in range(200):
            ma = rng.integers(0, n, int(rng.integers(1, 4))).tolist()
            mb = rng.integers(0, n, int(rng.integers(1, 4))).tolist()
            a = np.repeat(np.asarray(ma, dtype=np.int64), len(mb))
            b = np.tile(np.asarray(mb, dtype=np.int64), len(ma))
            full = score_pairs(f, a, b, p)
            assert check(ma, mb) == bool(((full.score >= floor) & ~full.conflict).all())
    with pytest.raises(ValueError, match="unknown implementation"):
        pattern_array(f, i * n + j, n, impl="sse9")
    # clusters past the kernel's 256 rows a side take the numpy path: the same answer
    big = list(range(n))
    loose = CohesionCheck(f, p, -1.0)
    assert loose(big, [0]) == (
        not score_pairs(f, np.arange(n), np.zeros(n, np.int64), p).conflict.any()
    )


def test_scores_above_a_floor_are_the_full_scores_filtered() -> None:
    rng = np.random.default_rng(11)
    n = 200
    f = _features(rng, n)
    # near-copies, so that some pairs score high
    f.clk[n // 2 :] = f.clk[: n // 2]
    p = dice_model()
    ii, jj = np.triu_indices(n, 1)
    i, j = ii.astype(np.int64), jj.astype(np.int64)
    full = score_pairs(f, i, j, p)
    codes = i * n + j
    for floor in (-1.0, 0.05, 0.5, 0.99, 2.0):
        ki, kj, kept = score_pairs_above(f, codes, n, p, floor, chunk=777)
        sel = full.score >= floor
        assert (ki == i[sel]).all() and (kj == j[sel]).all()
        for name in ("score", "pattern", "dice", "agree", "disagree", "conflict", "keys_agreed"):
            assert (getattr(kept, name) == getattr(full, name)[sel]).all()
        assert np.array_equal(kept.address_dice, full.address_dice[sel], equal_nan=True)
        # filtered by patterns computed beforehand (to estimate a model): the same pairs
        pi, pj, pk = score_pairs_above(
            f, codes, n, p, floor, chunk=777, patterns=pattern_array(f, codes, n, chunk=500)
        )
        assert (pi == ki).all() and (pj == kj).all() and (pk.score == kept.score).all()
    assert 0 < int((full.score >= 0.5).sum()) < i.size  # the floors above do filter


def test_birth_gap_of_whole_years_is_the_difference() -> None:
    zero = np.zeros(3)
    gap = birth_gap(np.array([30.2, 31.9, np.nan]), zero, np.array([31.9, 29.0, 30.0]), zero)
    assert gap[:2] == pytest.approx([1.7, 2.9])
    assert np.isnan(gap[2])  # unknown stays unknown (the "missing" level)


@pytest.mark.parametrize(
    ("age_i", "age_j", "expected"),
    [
        (30, 25, 0.0),  # both in 25-34 (the column holds the floor): intervals overlap
        (24, 25, 1.0),  # 24 in whole years against 25-34: a year apart at least
        (10, 25, 15.0),  # a child of 10 and an adult of 25-34: 15 years at least
        (25, 50, 16.0),  # 25-34 and 50+: born 16 years apart at least
        (50, 50, 0.0),
    ],
)
def test_birth_gap_of_bands_is_the_distance_between_intervals(
    age_i: int, age_j: int, expected: float
) -> None:
    ages = np.array([age_i, age_j], dtype=np.int16)
    day = np.full(2, 20_000, dtype=np.int32)
    birth, width = birth_years(ages, day), birth_width(ages)
    gap = birth_gap(birth[:1], width[:1], birth[1:], width[1:])
    assert gap[0] == pytest.approx(expected)
