"""Scoring candidate pairs: comparison vectors and match probabilities.

Owns the pair score of the matching engine. For each pair it computes the
evidence the encodings carry — Dice of the person filters (computed by the Dice
kernel), how many keyed blocking keys agree and differ, keyed exact tokens
(checked NHS number, NI number and UPN, and any local identifier the scheme
declares), sex, the birth years implied by age at the extract date (an interval
where the age is a band), Dice of the address filters — turns it into a
comparison pattern and scores the pattern with the
:class:`~._matchmodel.MatchModel`: the score is the match probability.

A checked identifier (one with a check digit) present on both records and
different makes the pair a *conflict*, which clustering never merges across:
two valid, different NHS numbers are two people. Local identifiers carry no
check digit and are only evidence.

Must never: look at anything but encodings and coarse attributes, log values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from protocols import AGE_BANDS

from . import _kernel as kernel
from . import _matchmodel as mm
from ._blocking import U64, decode_pairs, threaded_map
from ._matchmodel import MatchModel

# The bands ages of 25 and over travel as (protocols.AGE_BANDS): floor -> width in
# years. Repeated here as numbers: the engine's age column holds a band's floor.
_BAND_FLOORS = np.asarray([lo for lo, _, _ in AGE_BANDS], dtype=np.int16)
_BAND_WIDTHS = np.asarray([hi - lo for lo, hi, _ in AGE_BANDS], dtype=np.float64)

__all__ = [
    "CohesionCheck",
    "Features",
    "PairScores",
    "birth_gap",
    "birth_width",
    "birth_years",
    "kernel",
    "pattern_array",
    "pattern_histogram",
    "pattern_counts",
    "score_pairs",
    "score_pairs_above",
    "score_pairs_chunked",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass
class Features:
    """What pair scoring reads, per record row."""

    clk: U64  # (n, words)
    exact: U64  # (n, types) token codes, 0 = missing
    checked: npt.NDArray[np.bool_]  # (types,) which token types carry a check digit
    sex: npt.NDArray[np.int8]  # 0 unknown
    birth: F64  # implied birth time in years (extract day / 365.25 - age); nan unknown
    # the width of the birth interval ending at ``birth``: 0 for an age in whole
    # years, the band's width for an age band (the age column holds its floor)
    birth_width: F64
    keys: U64  # (n, keys) keyed blocking-key codes, 0 = missing
    addr: U64  # (n, words) address filters, zero rows where absent
    has_addr: npt.NDArray[np.bool_]


@dataclass
class PairScores:
    """Scores of pairs (i[k], j[k]) and their evidence."""

    score: F64  # match probability
    pattern: I64  # comparison pattern (see _matchmodel)
    dice: F64
    agree: npt.NDArray[np.bool_]  # (k, types) same token
    disagree: npt.NDArray[np.bool_]  # (k, types) both present, different
    conflict: npt.NDArray[np.bool_]  # a checked identifier disagrees
    sex_disagree: npt.NDArray[np.bool_]
    age_gap: F64  # |birth_i - birth_j| in years, nan when unknown
    keys_agreed: I64  # blocking keys present on both and equal
    keys_differing: I64  # blocking keys present on both and different
    address_dice: F64  # Dice of the address filters, nan unless both have one


def birth_years(age: npt.NDArray[np.int16], extract_day: npt.NDArray[np.int32]) -> F64:
    """Implied birth time in years from age at extract date; nan where age is unknown."""
    b = extract_day.astype(np.float64) / 365.25 - age.astype(np.float64)
    out: F64 = np.where(age >= 0, b, np.nan)
    return out


def birth_width(age: npt.NDArray[np.int16]) -> F64:
    """Years of birth times an age allows beyond its floor: 0 for whole years, else the band's."""
    band = np.searchsorted(_BAND_FLOORS, age, side="right") - 1
    width = _BAND_WIDTHS[np.maximum(band, 0)]
    out: F64 = np.where(band >= 0, width, 0.0)
    return out


def birth_gap(birth_i: F64, width_i: F64, birth_j: F64, width_j: F64) -> F64:
    """Years between two birth intervals ``[birth - width, birth]`` (0 when they overlap).

    With whole-year ages on both sides (widths 0) this is ``|birth_i - birth_j|``.
    """
    out: F64 = np.maximum(0.0, np.maximum(birth_i - width_i - birth_j, birth_j - width_j - birth_i))
    return out


def _patterns(f: Features, i: I64, j: I64) -> PairScores:
    """Everything but the score."""
    dice = kernel.dice_pairs(f.clk, f.clk, i, j)
    ei, ej = f.exact[i], f.exact[j]
    both = (ei != 0) & (ej != 0)
    agree = both & (ei == ej)
    disagree = both & (ei != ej)
    checked, local = f.checked, ~f.checked
    si, sj = f.sex[i], f.sex[j]
    gap = birth_gap(f.birth[i], f.birth_width[i], f.birth[j], f.birth_width[j])
    ki, kj = f.keys[i], f.keys[j]
    kboth = (ki != 0) & (kj != 0)
    kagree = (kboth & (ki == kj)).sum(axis=1, dtype=np.int64)
    kdiff = (kboth & (ki != kj)).sum(axis=1, dtype=np.int64)
    both_addr = f.has_addr[i] & f.has_addr[j]
    adice = np.where(both_addr, kernel.dice_pairs(f.addr, f.addr, i, j), np.nan)
    pattern = mm.patterns(
        [
            mm.person_level(dice, kagree, kdiff, gap),
            mm.address_level(adice),
            mm.token_level(agree[:, checked].any(axis=1), disagree[:, checked].any(axis=1)),
            mm.token_level(agree[:, local].any(axis=1), disagree[:, local].any(axis=1)),
            mm.sex_level(si, sj),
        ]
    )
    conflict = disagree[:, checked].any(axis=1)
    sex_dis = (si != 0) & (sj != 0) & (si != sj)
    empty = np.zeros(i.size)
    return PairScores(
        empty, pattern, dice, agree, disagree, conflict, sex_dis, gap, kagree, kdiff, adice
    )


def score_pairs(f: Features, i: I64, j: I64, model: MatchModel) -> PairScores:
    """Score every pair (i[k], j[k])."""
    s = _patterns(f, i, j)
    s.score = model.probability(s.pattern)
    return s


def _kernel_features(f: Features) -> tuple[npt.NDArray[np.generic], ...]:
    """The feature columns in the order the compiled pattern kernel takes them."""
    c = np.ascontiguousarray
    return (
        c(f.clk, dtype=np.uint64),
        c(f.addr, dtype=np.uint64),
        c(f.has_addr, dtype=np.bool_),
        c(f.exact, dtype=np.uint64),
        c(f.checked, dtype=np.bool_),
        c(f.sex, dtype=np.int8),
        c(f.birth, dtype=np.float64),
        c(f.birth_width, dtype=np.float64),
        c(f.keys, dtype=np.uint64),
    )


# the level boundaries of :mod:`._matchmodel`, as the compiled pattern kernel takes them
_LEVELS = (
    np.asarray(mm.PERSON_CUTS, dtype=np.float64),
    np.asarray(mm.ADDRESS_CUTS, dtype=np.float64),
    np.asarray(mm.PLACES, dtype=np.int64),
    mm.KEY_LEVELS,
    mm.BIRTH_CLOSE,
)


def pattern_array(
    f: Features,
    codes: I64,
    n: int,
    chunk: int = 1 << 18,
    impl: str | None = None,
    threads: int = 1,
) -> npt.NDArray[np.int16]:
    """The comparison pattern of each pair coded ``codes`` (``i * n + j``), two bytes a pair.

    Computed by the compiled kernel in one pass a pair (the same levels as
    :func:`score_pairs`, cross-checked by the tests); ``chunk`` pairs a call,
    up to ``threads`` calls at once (the kernel lets go of the interpreter
    lock; each call writes its own slice); ``impl`` picks the kernel's body
    (None: the best this CPU supports).
    """
    out = np.zeros(codes.size, dtype=np.int16)  # PATTERNS < 2**15 (checked in _matchmodel)
    feats = _kernel_features(f)
    codes = np.ascontiguousarray(codes, dtype=np.int64)

    def one(k: int) -> None:
        kernel.pair_patterns(feats, _LEVELS, codes[k : k + chunk], n, out[k : k + chunk], impl)

    for _ in threaded_map(one, range(0, codes.size, chunk), threads):
        pass
    return out


class CohesionCheck:
    """Whether every cross pair of two clusters scores at least ``floor`` without a conflict.

    The same scores as :func:`score_pairs`, computed by the compiled kernel one
    call per check (a handful of rows a side); clusters of more than 256 rows
    are scored with :func:`score_pairs` instead.
    """

    def __init__(
        self, f: Features, model: MatchModel, floor: float, impl: str | None = None
    ) -> None:
        self.f, self.model, self.floor, self.impl = f, model, floor, impl
        self._feats = _kernel_features(f)
        self._table = np.ascontiguousarray(model.probability(np.arange(mm.PATTERNS)))

    def __call__(self, ma: Sequence[int], mb: Sequence[int]) -> bool:
        """Whether every pair (a, b) of ``ma`` x ``mb`` coheres."""
        if len(ma) <= kernel.COHERE_ROWS and len(mb) <= kernel.COHERE_ROWS:
            return kernel.patterns_all_at_least(
                self._feats, _LEVELS, self._table, ma, mb, self.floor, self.impl
            )
        i = np.repeat(np.asarray(ma, dtype=np.int64), len(mb))
        j = np.tile(np.asarray(mb, dtype=np.int64), len(ma))
        s = score_pairs(self.f, i, j, self.model)
        return bool(((s.score >= self.floor) & ~s.conflict).all())


def pattern_counts(f: Features, codes: I64, n: int, chunk: int = 1 << 18) -> F64:
    """Histogram of comparison patterns over the pairs coded ``codes`` (``i * n + j``)."""
    return pattern_histogram(pattern_array(f, codes, n, chunk))


def pattern_histogram(patterns: npt.NDArray[np.int16]) -> F64:
    """How many pairs have each comparison pattern, as EM takes it."""
    return np.bincount(patterns, minlength=mm.PATTERNS).astype(np.float64)


def score_pairs_chunked(
    f: Features, i: I64, j: I64, model: MatchModel, chunk: int = 1 << 20
) -> PairScores:
    """:func:`score_pairs` in slices of ``chunk`` pairs (bounded temporaries), concatenated."""
    if i.size <= chunk:
        return score_pairs(f, i, j, model)
    parts = [
        score_pairs(f, i[k : k + chunk], j[k : k + chunk], model) for k in range(0, i.size, chunk)
    ]
    return _concat(parts)


def _concat(parts: list[PairScores]) -> PairScores:
    return PairScores(
        *(
            np.concatenate([getattr(s, name) for s in parts])
            for name in PairScores.__dataclass_fields__
        )
    )


def _take(s: PairScores, sel: I64) -> PairScores:
    return PairScores(*(getattr(s, name)[sel] for name in PairScores.__dataclass_fields__))


def score_pairs_above(
    f: Features,
    codes: I64,
    n: int,
    model: MatchModel,
    floor: float,
    chunk: int = 1 << 18,
    patterns: npt.NDArray[np.int16] | None = None,
    threads: int = 1,
) -> tuple[I64, I64, PairScores]:
    """The pairs coded ``codes`` (``i * n + j``) scoring at least ``floor``, with their scores.

    Scores ``chunk`` pairs at a time and keeps only those at or above ``floor``, so
    neither the pairs nor their evidence are ever held for every candidate: most
    candidates are clear non-matches that nothing after scoring looks at. With
    ``patterns`` (:func:`pattern_array` of ``codes``, already computed to estimate
    the model) the candidates are filtered by pattern; without, the patterns are
    computed here (the compiled kernel, one pass a pair). Only the kept ones are
    compared again for their evidence. Returns ``(i, j, scores)`` in code order.
    ``threads``: see :func:`pattern_array`.
    """
    if patterns is None:
        patterns = pattern_array(f, codes, n, chunk, threads=threads)
    codes = codes[model.probability(patterns.astype(np.int64)) >= floor]
    keep_i: list[I64] = []
    keep_j: list[I64] = []
    kept: list[PairScores] = []
    for k in range(0, codes.size, chunk):
        i, j = decode_pairs(codes[k : k + chunk], n)
        s = score_pairs(f, i, j, model)
        sel = np.nonzero(s.score >= floor)[0]
        keep_i.append(i[sel])
        keep_j.append(j[sel])
        kept.append(_take(s, sel))
    if not kept:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), score_pairs(f, e, e.copy(), model)
    return np.concatenate(keep_i), np.concatenate(keep_j), _concat(kept)
