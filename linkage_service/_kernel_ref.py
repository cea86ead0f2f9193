"""Reference Dice kernel in numpy: slow, obvious, and the oracle for the compiled one.

Every function here has a twin in :mod:`linkage_service._kernel` with the same
signature and the same results (bit for bit: Dice is computed as
``2 * popcount(a & b) / (popcount(a) + popcount(b))`` in float64, 0.0 when both
filters are empty). Tests cross-check the two on random and edge-case inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]


def popcounts(filters: U64) -> npt.NDArray[np.uint32]:
    """Number of set bits of each row."""
    counts: npt.NDArray[np.uint32] = np.bitwise_count(filters).sum(axis=1, dtype=np.uint32)
    return counts


def dice_pairs(
    a: U64, b: U64, ia: npt.NDArray[np.int64], ib: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Dice coefficient of rows ``a[ia[k]]`` and ``b[ib[k]]`` for every k."""
    inter = np.bitwise_count(a[ia] & b[ib]).sum(axis=1, dtype=np.int64)
    total = np.bitwise_count(a[ia]).sum(axis=1, dtype=np.int64) + np.bitwise_count(b[ib]).sum(
        axis=1, dtype=np.int64
    )
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 0.0)


def dice_above(
    a: U64, b: U64, threshold: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Every pair (i, j) of a x b with Dice >= threshold, in row-major order."""
    out_i, out_j, out_s = [], [], []
    for i in range(a.shape[0]):
        inter = np.bitwise_count(a[i] & b).sum(axis=1, dtype=np.int64)
        total = np.bitwise_count(a[i]).sum(dtype=np.int64) + np.bitwise_count(b).sum(
            axis=1, dtype=np.int64
        )
        s = np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 0.0)
        j = np.nonzero(s >= threshold)[0]
        out_i.append(np.full(j.shape, i, dtype=np.int64))
        out_j.append(j.astype(np.int64))
        out_s.append(s[j])
    if not out_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


def dice_all_at_least(
    filters: U64, rows_a: Sequence[int], rows_b: Sequence[int], floor: float
) -> bool:
    """Whether every pair (a, b) of ``rows_a`` x ``rows_b`` has Dice >= ``floor``."""
    ia = np.repeat(np.asarray(rows_a, dtype=np.int64), len(rows_b))
    ib = np.tile(np.asarray(rows_b, dtype=np.int64), len(rows_a))
    return bool((dice_pairs(filters, filters, ia, ib) >= floor).all())
