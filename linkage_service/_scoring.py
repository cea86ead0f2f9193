"""Scoring candidate pairs: Dice on the person filter plus token and coarse evidence.

Owns the pair score of the matching engine. The score starts from the Dice
coefficient of the two person filters (computed by the Dice kernel) and adds
evidence the filter cannot carry:

- a keyed exact token (NHS number, NI number, UPN) present on both records and
  equal adds ``token_bonus`` (the same checked identifier: a match even a little
  below the threshold); present on both and different subtracts
  ``token_penalty`` and makes the pair a *conflict*, which clustering never
  merges across;
- known sexes that differ subtract ``sex_penalty``;
- birth years implied by age and extract date more than ``age_tolerance`` apart
  subtract ``age_penalty``;
- each keyed blocking key (phonetic name codes with date of birth, computed by
  the agencies) present on both and equal adds ``key_bonus``, and each present on
  both and different subtracts ``key_penalty``: the keys see name and date
  together, which the filter's bit counts cannot;
- address filters present on both with Dice at least ``address_same`` add
  ``address_bonus``, below it subtract ``address_penalty``: among a million
  records, different people with the same name and date of birth exist, and
  they rarely share an address.

Must never: look at anything but encodings and coarse attributes, log values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import _kernel as kernel
from ._blocking import U64, decode_pairs

__all__ = [
    "Features",
    "PairScores",
    "ScalarScorer",
    "ScoreParams",
    "birth_years",
    "dice_one",
    "kernel",
    "score_pairs",
    "score_pairs_above",
    "score_pairs_chunked",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
CACHE_ROWS = 1 << 16  # rows a one-pair scorer keeps as Python integers


@dataclass(frozen=True)
class ScoreParams:
    """The evidence weights (a view of the engine configuration)."""

    token_bonus: float
    token_penalty: float
    sex_penalty: float
    age_penalty: float
    age_tolerance: float
    key_bonus: float
    key_penalty: float
    address_bonus: float
    address_penalty: float
    address_same: float


@dataclass
class Features:
    """What pair scoring reads, per record row."""

    clk: U64  # (n, words)
    exact: U64  # (n, types) token codes, 0 = missing
    sex: npt.NDArray[np.int8]  # 0 unknown
    birth: F64  # implied birth time in years (extract day / 365.25 - age); nan unknown
    keys: U64  # (n, keys) keyed blocking-key codes, 0 = missing
    addr: U64  # (n, words) address filters, zero rows where absent
    has_addr: npt.NDArray[np.bool_]


@dataclass
class PairScores:
    """Scores of pairs (i[k], j[k]) and their evidence."""

    score: F64
    dice: F64
    agree: npt.NDArray[np.bool_]  # (k, types) same token
    disagree: npt.NDArray[np.bool_]  # (k, types) both present, different
    sex_disagree: npt.NDArray[np.bool_]
    age_gap: F64  # |birth_i - birth_j| in years, nan when unknown
    keys_agreed: I64  # blocking keys present on both and equal
    keys_differing: I64  # blocking keys present on both and different
    address_dice: F64  # Dice of the address filters, nan unless both have one

    @property
    def conflict(self) -> npt.NDArray[np.bool_]:
        """Pairs with a conflicting exact token of the same type."""
        out: npt.NDArray[np.bool_] = np.asarray(self.disagree.any(axis=1), dtype=np.bool_)
        return out


def birth_years(age: npt.NDArray[np.int16], extract_day: npt.NDArray[np.int32]) -> F64:
    """Implied birth time in years from age at extract date; nan where age is unknown."""
    b = extract_day.astype(np.float64) / 365.25 - age.astype(np.float64)
    out: F64 = np.where(age >= 0, b, np.nan)
    return out


def score_pairs(f: Features, i: I64, j: I64, p: ScoreParams) -> PairScores:
    """Score every pair (i[k], j[k])."""
    dice = kernel.dice_pairs(f.clk, f.clk, i, j)
    ei, ej = f.exact[i], f.exact[j]
    both = (ei != 0) & (ej != 0)
    agree = both & (ei == ej)
    disagree = both & (ei != ej)
    si, sj = f.sex[i], f.sex[j]
    sex_dis = (si != 0) & (sj != 0) & (si != sj)
    gap = np.abs(f.birth[i] - f.birth[j])
    far = np.nan_to_num(gap, nan=0.0) > p.age_tolerance
    ki, kj = f.keys[i], f.keys[j]
    kboth = (ki != 0) & (kj != 0)
    kagree = (kboth & (ki == kj)).sum(axis=1, dtype=np.int64)
    kdiff = (kboth & (ki != kj)).sum(axis=1, dtype=np.int64)
    score = (
        dice
        + p.token_bonus * agree.any(axis=1)
        - p.token_penalty * disagree.any(axis=1)
        - p.sex_penalty * sex_dis
        - p.age_penalty * far
        + p.key_bonus * kagree
        - p.key_penalty * kdiff
    )
    both_addr = f.has_addr[i] & f.has_addr[j]
    adice = np.where(both_addr, kernel.dice_pairs(f.addr, f.addr, i, j), np.nan)
    same_addr = both_addr & (np.nan_to_num(adice, nan=0.0) >= p.address_same)
    score = score + p.address_bonus * same_addr - p.address_penalty * (both_addr & ~same_addr)
    return PairScores(score, dice, agree, disagree, sex_dis, gap, kagree, kdiff, adice)


class ScalarScorer:
    """The same score as :func:`score_pairs`, one pair at a time, for cohesion checks.

    Clusters are small, so checking a merge means scoring a handful of pairs; a
    numpy call per handful costs more than the arithmetic. Filters become Python
    integers (cached per row) and popcounts ``int.bit_count``; the float arithmetic
    is the kernel's and ``score_pairs``'s, in the same order, so results are equal.
    The cache holds at most ``cache_rows`` rows (it is emptied when full): a cached
    row costs about 700 bytes, and at a million records an unbounded cache grew to
    half a gigabyte for a hit rate a small one nearly matches (a row is mostly
    looked up again within the same merge check).
    """

    def __init__(self, f: Features, p: ScoreParams, cache_rows: int = CACHE_ROWS) -> None:
        self.f, self.p, self._cap = f, p, cache_rows
        self._rows: dict[int, tuple[int, int, tuple[int, ...], int, float, tuple[int, ...]]] = {}
        self._addr: dict[int, tuple[int, int]] = {}

    def _row(self, r: int) -> tuple[int, int, tuple[int, ...], int, float, tuple[int, ...]]:
        got = self._rows.get(r)
        if got is None:
            if len(self._rows) >= self._cap:
                self._rows.clear()
            bits = int.from_bytes(self.f.clk[r].tobytes(), "little")
            got = (
                bits,
                bits.bit_count(),
                tuple(self.f.exact[r].tolist()),
                int(self.f.sex[r]),
                float(self.f.birth[r]),
                tuple(self.f.keys[r].tolist()),
            )
            self._rows[r] = got
        return got

    def score(self, a: int, b: int) -> tuple[float, bool]:
        """(score, conflicting exact token) of rows ``a`` and ``b``."""
        ba, pa, ea, sa, ya, ka = self._row(a)
        bb, pb, eb, sb, yb, kb = self._row(b)
        total = pa + pb
        dice = 2.0 * (ba & bb).bit_count() / total if total else 0.0
        agree = disagree = False
        for x, y in zip(ea, eb, strict=True):
            if x and y:
                if x == y:
                    agree = True
                else:
                    disagree = True
        gap = abs(ya - yb)
        far = gap > self.p.age_tolerance if gap == gap else False
        kagree = kdiff = 0
        for x, y in zip(ka, kb, strict=True):
            if x and y:
                if x == y:
                    kagree += 1
                else:
                    kdiff += 1
        p = self.p
        score = (
            dice
            + p.token_bonus * agree
            - p.token_penalty * disagree
            - p.sex_penalty * (sa != 0 and sb != 0 and sa != sb)
            - p.age_penalty * far
            + p.key_bonus * kagree
            - p.key_penalty * kdiff
        )
        if self.f.has_addr[a] and self.f.has_addr[b]:
            same = dice_one(self.f.addr, self._addr, a, b, self._cap) >= p.address_same
            score = score + p.address_bonus * same - p.address_penalty * (not same)
        return score, disagree


def dice_one(
    filters: U64,
    cache: dict[int, tuple[int, int]],
    a: int,
    b: int,
    cache_rows: int = CACHE_ROWS,
) -> float:
    """Dice of rows ``a`` and ``b`` of ``filters`` (Python integers cached in ``cache``).

    ``cache`` is emptied when it holds ``cache_rows`` rows (see :class:`ScalarScorer`).
    """
    if len(cache) >= cache_rows:
        cache.clear()
    for r in (a, b):
        if r not in cache:
            bits = int.from_bytes(filters[r].tobytes(), "little")
            cache[r] = (bits, bits.bit_count())
    ba, pa = cache[a]
    bb, pb = cache[b]
    total = pa + pb
    return 2.0 * (ba & bb).bit_count() / total if total else 0.0


def score_pairs_chunked(
    f: Features, i: I64, j: I64, p: ScoreParams, chunk: int = 1 << 20
) -> PairScores:
    """:func:`score_pairs` in slices of ``chunk`` pairs (bounded temporaries), concatenated."""
    if i.size <= chunk:
        return score_pairs(f, i, j, p)
    parts = [score_pairs(f, i[k : k + chunk], j[k : k + chunk], p) for k in range(0, i.size, chunk)]
    return _concat(parts)


def _concat(parts: list[PairScores]) -> PairScores:
    return PairScores(
        *(
            np.concatenate([getattr(s, name) for s in parts])
            for name in PairScores.__dataclass_fields__
        )
    )


def score_pairs_above(
    f: Features, codes: I64, n: int, p: ScoreParams, floor: float, chunk: int = 1 << 18
) -> tuple[I64, I64, PairScores]:
    """The pairs coded ``codes`` (``i * n + j``) scoring at least ``floor``, with their scores.

    Scores ``chunk`` pairs at a time and keeps only those at or above ``floor``, so
    neither the pairs nor their evidence are ever held for every candidate: most
    candidates are clear non-matches that nothing after scoring looks at.
    Returns ``(i, j, scores)`` in code order.
    """
    keep_i: list[I64] = []
    keep_j: list[I64] = []
    kept: list[PairScores] = []
    for k in range(0, codes.size, chunk):
        i, j = decode_pairs(codes[k : k + chunk], n)
        s = score_pairs(f, i, j, p)
        sel = np.nonzero(s.score >= floor)[0]
        keep_i.append(i[sel])
        keep_j.append(j[sel])
        kept.append(
            PairScores(*(getattr(s, name)[sel] for name in PairScores.__dataclass_fields__))
        )
    if not kept:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), score_pairs(f, e, e.copy(), p)
    return np.concatenate(keep_i), np.concatenate(keep_j), _concat(kept)
