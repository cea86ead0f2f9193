"""The Dice kernel the linkage engine uses: compiled, GIL-free, exact.

Same four functions, signatures and results (bit for bit) as the numpy oracle
:mod:`linkage_service._kernel_ref`, backed by the C extension
``linkage_service._dice``, which picks the fastest body this CPU supports at run
time (AVX-512 VPOPCNTQ, then scalar hardware popcount, then portable C). The
loops run without the GIL, so threads working on separate slices use separate
cores.

Inputs are validated, never converted: filters must be C-contiguous 2-D
``uint64`` arrays with the same number of words per row, index arrays 1-D
``int64`` within ``[0, rows)`` (no negative wrap-around, unlike numpy fancy
indexing); anything else raises ``ValueError`` naming the argument.

This module must never fall back to the reference silently: a missing extension
is an ``ImportError`` at import, because a 50x slowdown is a bug, not a mode.
The optional ``impl`` keyword exists for tests and benchmarks that pin one body.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

try:
    from linkage_service import _dice
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "linkage_service._dice (the compiled Dice kernel) is not built; reinstall the "
        "project with `pip install -e '.[dev]'` (needs a C compiler) rather than using "
        "the source tree directly"
    ) from exc

U64 = npt.NDArray[np.uint64]

__all__ = [
    "block_codes",
    "block_order",
    "dice_above",
    "dice_all_at_least",
    "dice_pairs",
    "implementations",
    "lsh_signatures",
    "pair_patterns",
    "patterns_all_at_least",
    "popcounts",
]
I64 = npt.NDArray[np.int64]


def implementations() -> tuple[str, ...]:
    """Names of the kernel bodies this CPU can run, fastest (the default) first."""
    return _dice.implementations()


def popcounts(filters: U64, *, impl: str | None = None) -> npt.NDArray[np.uint32]:
    """Number of set bits of each row."""
    out = np.empty(_rows(filters, "filters"), dtype=np.uint32)
    _dice.popcounts(filters, out, impl=impl)
    return out


def dice_pairs(
    a: U64,
    b: U64,
    ia: npt.NDArray[np.int64],
    ib: npt.NDArray[np.int64],
    *,
    impl: str | None = None,
) -> npt.NDArray[np.float64]:
    """Dice coefficient of rows ``a[ia[k]]`` and ``b[ib[k]]`` for every k."""
    out = np.empty(_rows(ia, "ia"), dtype=np.float64)
    _dice.dice_pairs(a, b, ia, ib, out, impl=impl)
    return out


def dice_above(
    a: U64, b: U64, threshold: float, *, impl: str | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Every pair (i, j) of a x b with Dice >= threshold, in row-major order."""
    bi, bj, bs = _dice.dice_above(a, b, float(threshold), impl=impl)
    return (
        np.frombuffer(bi, dtype=np.int64),
        np.frombuffer(bj, dtype=np.int64),
        np.frombuffer(bs, dtype=np.float64),
    )


COHERE_ROWS = 256  # the C checks' stack buffers; larger clusters take numpy


def dice_all_at_least(
    filters: U64, rows_a: Sequence[int], rows_b: Sequence[int], floor: float
) -> bool:
    """Whether every pair (a, b) of ``rows_a`` x ``rows_b`` has Dice >= ``floor``.

    One call per cluster cohesion check (a handful of rows a side), stopping at
    the first pair below; clusters of more than 256 rows are checked in one
    :func:`dice_pairs` call instead.
    """
    if len(rows_a) <= COHERE_ROWS and len(rows_b) <= COHERE_ROWS:
        return _dice.dice_all_at_least(filters, rows_a, rows_b, float(floor))
    ia = np.repeat(np.asarray(rows_a, dtype=np.int64), len(rows_b))
    ib = np.tile(np.asarray(rows_b, dtype=np.int64), len(rows_a))
    return bool((dice_pairs(filters, filters, ia, ib) >= floor).all())


def lsh_signatures(
    filters: U64,
    positions: npt.NDArray[np.int64],
    salts: U64,
    present: npt.NDArray[np.bool_],
) -> U64:
    """``(n, bands)`` band signatures: the bits at ``positions[b]`` packed, plus
    ``salts[b]``, forced odd; 0 where not ``present`` (see :mod:`._blocking`)."""
    out = np.empty((_rows(filters, "filters"), positions.shape[0]), dtype=np.uint64)
    _dice.lsh_signatures(
        filters,
        np.ascontiguousarray(positions, dtype=np.int64),
        salts,
        np.ascontiguousarray(present, dtype=np.bool_),
        out,
    )
    return out


def block_order(keys: U64, within: U64 | None, rows: I64) -> tuple[I64, U64]:
    """``rows`` (ascending) sorted by key, then ``within``, then row; and their keys."""
    out_rows = np.empty(_rows(rows, "rows"), dtype=np.int64)
    out_keys = np.empty(out_rows.size, dtype=np.uint64)
    _dice.block_order(keys, within, rows, out_rows, out_keys)
    return out_rows, out_keys


def block_codes(rows: I64, keys: U64, is_new: npt.NDArray[np.bool_], window: int, n: int) -> I64:
    """Pair codes ``min * n + max`` of rows in block order (see :func:`._blocking.block_pairs`)."""
    got = _dice.block_codes(rows, keys, np.ascontiguousarray(is_new, dtype=np.bool_), window, n)
    return np.frombuffer(got, dtype=np.int64)


def pair_patterns(
    features: tuple[npt.NDArray[np.generic], ...],
    levels: tuple[object, ...],
    codes: I64,
    n: int,
    out: npt.NDArray[np.int16],
    impl: str | None = None,
) -> None:
    """Comparison pattern of each pair code ``i * n + j`` into ``out`` (see :mod:`._scoring`).

    ``features``: clk, addr, has_addr, exact, checked, sex, birth, birth_width, keys;
    ``levels``: person cuts, address cuts, place values, key levels, birth close.
    ``impl``: one of :func:`implementations` (None: the best this CPU supports).
    """
    _dice.pair_patterns(features, levels, codes, n, out, impl)


def patterns_all_at_least(
    features: tuple[npt.NDArray[np.generic], ...],
    levels: tuple[object, ...],
    probability: npt.NDArray[np.float64],
    rows_a: Sequence[int],
    rows_b: Sequence[int],
    floor: float,
    impl: str | None = None,
) -> bool:
    """Whether every pair of ``rows_a`` x ``rows_b`` (at most 256 a side) has no
    conflicting checked identifier and ``probability[pattern] >= floor``."""
    return _dice.patterns_all_at_least(
        features, levels, probability, rows_a, rows_b, float(floor), impl
    )


def _rows(arr: object, name: str) -> int:
    """Leading dimension of an array argument (full validation happens in C)."""
    shape = getattr(arr, "shape", None)
    if not isinstance(shape, tuple) or not shape:
        raise ValueError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    return int(shape[0])
