"""Blocking: which pairs of records are worth comparing, without any secret.

Owns the candidate-pair generation of the matching engine. Keys are uint64
columns (0 = no key for that record): Hamming LSH band signatures over a Bloom
filter (fixed, seeded bit positions, so every run and every machine samples the
same bits), the agencies' keyed blocking keys and keyed exact tokens (their
codes, see :func:`._batch.token_code`). Records sharing a key
value form a block; pairs are generated within blocks with numpy (sort, run
boundaries, repeat), never with per-record Python loops. Each new record pairs
with the records at most ``window`` positions away in its block (in row order),
so blocks of up to ``window + 1`` records are complete and one huge block cannot
blow up the work.

Must never: hold or derive the linkage secret, look at anything but encodings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from . import _kernel as kernel
from ._batch import token_codes

__all__ = [
    "BlockSpec",
    "band_positions",
    "block_codes",
    "block_order",
    "block_pairs",
    "decode_pairs",
    "distinct",
    "distinct_rows",
    "lsh_signatures",
    "sorted_distinct",
    "threaded_map",
    "token_codes",
    "unique_codes",
    "unique_pair_codes",
    "unique_pairs",
]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
_A = TypeVar("_A")
_R = TypeVar("_R")
_SALT_MULT = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class BlockSpec:
    """One blocking key for :func:`block_pairs`: its column, the column ordering its blocks
    (None: row order), and the window."""

    key: U64
    within: U64 | None
    window: int


def band_positions(bits: int, bands: int, bits_per_band: int, seed: int) -> npt.NDArray[np.int64]:
    """``(bands, bits_per_band)`` filter bit positions, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [np.sort(rng.choice(bits, size=bits_per_band, replace=False)) for _ in range(bands)]
    ).astype(np.int64)


def lsh_signatures(
    filters: U64, positions: npt.NDArray[np.int64], present: npt.NDArray[np.bool_]
) -> U64:
    """``(n, bands)`` band signatures of ``filters``; 0 where the filter is absent.

    A signature is the band's sampled bits packed into a uint64, mixed with the band
    index (so band keys never collide across bands) and forced non-zero.
    """
    bands, k = positions.shape
    if k > 56:
        raise ValueError("at most 56 bits per band")
    salts = np.asarray([(b + 1) * _SALT_MULT % 2**64 for b in range(bands)], dtype=np.uint64)
    return kernel.lsh_signatures(
        np.ascontiguousarray(filters, dtype=np.uint64), positions, salts, present
    )


def block_order(
    keys: U64, alive: npt.NDArray[np.bool_] | None = None, within: U64 | None = None
) -> tuple[I64, U64]:
    """The rows :func:`block_pairs` pairs, in block order, and their keys.

    Rows with a non-zero key (and ``alive``), sorted by key, then by ``within``,
    then by row. Exposed so that two callers blocking on the same columns with
    the same rows (persons and places on an address band) sort once.
    """
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    ok = keys != 0
    if alive is not None:
        ok &= alive
    if within is not None:
        within = np.ascontiguousarray(within, dtype=np.uint64)
    return kernel.block_order(keys, within, np.flatnonzero(ok))


def block_codes(
    keys: U64,
    is_new: npt.NDArray[np.bool_],
    window: int,
    alive: npt.NDArray[np.bool_] | None = None,
    within: U64 | None = None,
    ordered: tuple[I64, U64] | None = None,
) -> I64:
    """:func:`block_pairs` as codes ``i * n + j`` (``n`` the length of ``keys``), unsorted.

    Each pair once, in no particular order; the pairs come straight out of the
    kernel's walk over the block order, never as two arrays of rows.
    """
    rows, k = ordered if ordered is not None else block_order(keys, alive, within)
    return kernel.block_codes(rows, k, is_new, window, keys.shape[0])


def block_pairs(
    keys: U64,
    is_new: npt.NDArray[np.bool_],
    window: int,
    alive: npt.NDArray[np.bool_] | None = None,
    within: U64 | None = None,
    ordered: tuple[I64, U64] | None = None,
) -> tuple[I64, I64]:
    """Pairs (i, j), i < j, of rows sharing a non-zero key where at least one row is new.

    ``keys`` is one key column (length n). Within a block the rows are ordered by
    ``within`` (e.g. another band's signature, so similar rows sit together), then
    by row; each new row pairs with the rows of its block at most ``window``
    positions away. ``ordered`` is :func:`block_order` of the same arguments, when
    the caller has it already. Each pair once, in no particular order.
    """
    codes = block_codes(keys, is_new, window, alive, within, ordered)
    return decode_pairs(codes, max(keys.shape[0], 1))


def unique_pair_codes(parts: Iterable[tuple[I64, I64]], n: int) -> I64:
    """Sorted distinct codes ``i * n + j`` of the pairs of all ``parts``.

    ``parts`` may be a generator: each part is reduced to its codes (8 bytes a pair
    instead of 16) before the next is made (see :func:`unique_codes`).
    """
    width = np.int64(n)
    return unique_codes(a.astype(np.int64, copy=False) * width + b for a, b in parts)


def threaded_map(fn: Callable[[_A], _R], items: Iterable[_A], threads: int) -> Iterator[_R]:
    """``map(fn, items)`` with up to ``threads`` calls running at once; results in order.

    For calls whose work is in the compiled kernels and numpy, which let go of
    the interpreter lock: each blocking key's block order and pair codes, so
    the keys are worked through on every core. At most ``threads`` items are
    taken ahead of the results, so a generator of large items (a key's
    contiguous copy) stays bounded. ``threads`` of 1 or less: plain ``map``.
    """
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="blocking") as pool:
        pending: deque[Future[_R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def unique_codes(parts: Iterable[I64]) -> I64:
    """Sorted distinct codes of all ``parts``.

    ``parts`` may be a generator: the codes are gathered into one array part by
    part, each part freed once copied, so the peak stays near the size of all
    codes rather than twice that.
    """
    codes: list[I64] = list(parts)
    total = sum(c.size for c in codes)
    out = np.empty(total, dtype=np.int64)
    at = 0
    while codes:
        c = codes.pop()
        out[at : at + c.size] = c
        at += c.size
        del c
    return sorted_distinct(out)


def sorted_distinct(codes: I64) -> I64:
    """``codes`` sorted (in place) with repeats dropped."""
    codes.sort()
    if codes.size:
        keep = np.empty(codes.size, dtype=np.bool_)
        keep[0] = True
        np.not_equal(codes[1:], codes[:-1], out=keep[1:])
        codes = codes[keep]
    return codes


def distinct(values: I64) -> I64:
    """``np.unique(values)`` of integers, by sorting a copy.

    numpy 2.3 and later find unique integers with a hash table, then sort them:
    ten times slower than a sort (10M row numbers: 7.7 s against 0.65 s here).
    """
    return sorted_distinct(np.array(values, dtype=np.int64))


def distinct_rows(rows: I64, n: int) -> I64:
    """``np.unique(rows)`` of row numbers ``0 <= row < n``: a pass over a table of ``n``
    flags rather than a sort."""
    seen = np.zeros(n, dtype=np.bool_)
    seen[rows] = True
    return np.flatnonzero(seen)


def decode_pairs(codes: I64, n: int) -> tuple[I64, I64]:
    """The pairs (i, j) of codes ``i * n + j``."""
    i, j = np.divmod(codes, np.int64(n))
    return i, j


def unique_pairs(parts: Iterable[tuple[I64, I64]], n: int) -> tuple[I64, I64]:
    """Union of pair lists, each pair once, sorted."""
    return decode_pairs(unique_pair_codes(parts, n), n)
