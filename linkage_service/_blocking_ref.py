"""Reference blocking in numpy: slow, obvious, and the oracle for the compiled one.

Every function here has a twin in :mod:`linkage_service._blocking` with the same
signature and the same results, computed there by the C kernel
(``linkage_service._dice``); tests cross-check the two on random inputs. Pairs
may come in another order (callers take the union of sorted codes).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
_SALT_MULT = 0x9E3779B97F4A7C15


def lsh_signatures(
    filters: U64, positions: npt.NDArray[np.int64], present: npt.NDArray[np.bool_]
) -> U64:
    """``(n, bands)`` band signatures of ``filters``; 0 where the filter is absent.

    A signature is the band's sampled bits packed into a uint64, mixed with the band
    index (so band keys never collide across bands) and forced non-zero.
    """
    n = filters.shape[0]
    bands, k = positions.shape
    if k > 56:
        raise ValueError("at most 56 bits per band")
    out = np.zeros((n, bands), dtype=np.uint64)
    for b in range(bands):
        sig = np.zeros(n, dtype=np.uint64)
        for t, pos in enumerate(positions[b].tolist()):
            bit = (filters[:, pos // 64] >> np.uint64(pos % 64)) & np.uint64(1)
            sig |= bit << np.uint64(t)
        salt = np.uint64((b + 1) * _SALT_MULT % 2**64)
        with np.errstate(over="ignore"):
            mixed = (sig + salt) | np.uint64(1)
        out[:, b] = np.where(present, mixed, np.uint64(0))
    return out


def block_order(
    keys: U64, alive: npt.NDArray[np.bool_] | None = None, within: U64 | None = None
) -> tuple[I64, U64]:
    """The rows :func:`block_pairs` pairs, in block order, and their keys.

    Rows with a non-zero key (and ``alive``), sorted by key, then by ``within``,
    then by row. Exposed so that two callers blocking on the same columns with
    the same rows (persons and places on an address band) sort once.
    """
    ok = keys != 0
    if alive is not None:
        ok &= alive
    rows = np.nonzero(ok)[0].astype(np.int64)
    k = keys[rows]
    if within is None:
        order = np.argsort(k, kind="stable")
    else:
        order = np.lexsort((within[rows], k))
    return rows[order], k[order]


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
    the caller has it already.
    """
    rows, k = ordered if ordered is not None else block_order(keys, alive, within)
    if rows.size < 2:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy()
    m = rows.size
    boundary = np.ones(m, dtype=np.bool_)
    boundary[1:] = k[1:] != k[:-1]
    run_id = np.cumsum(boundary) - 1
    run_start = np.nonzero(boundary)[0]
    run_end = np.append(run_start[1:], m)
    size = (run_end - run_start)[run_id]
    pos = np.arange(m, dtype=np.int64)
    keep = (size > 1) & is_new[rows]
    p = pos[keep]
    if p.size == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy()
    lo = np.maximum(run_start[run_id[p]], p - window)
    hi = np.minimum(run_end[run_id[p]], p + window + 1)
    counts = hi - lo
    src = np.repeat(p, counts)
    offs = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    dst = np.repeat(lo, counts) + offs
    a, b = rows[src], rows[dst]
    # both new: keep each pair once (from the smaller row); new-old: keep always
    sel = (a != b) & ((~is_new[b]) | (a < b))
    a, b = a[sel], b[sel]
    return np.minimum(a, b), np.maximum(a, b)
