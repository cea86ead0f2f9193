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
  subtract ``age_penalty``.

Must never: look at anything but encodings and coarse attributes, log values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._blocking import U64

try:  # the compiled kernel; the numpy reference until it lands (same API, same results)
    from . import _kernel as kernel  # type: ignore[attr-defined,unused-ignore]
except ImportError:  # pragma: no cover - fallback while linkage_service/_kernel.py is written
    from . import _kernel_ref as kernel

__all__ = ["Features", "PairScores", "ScoreParams", "birth_years", "kernel", "score_pairs"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ScoreParams:
    """The evidence weights (a view of the engine configuration)."""

    token_bonus: float
    token_penalty: float
    sex_penalty: float
    age_penalty: float
    age_tolerance: float


@dataclass
class Features:
    """What pair scoring reads, per record row."""

    clk: U64  # (n, words)
    exact: U64  # (n, types) token codes, 0 = missing
    sex: npt.NDArray[np.int8]  # 0 unknown
    birth: F64  # implied birth time in years (extract day / 365.25 - age); nan unknown


@dataclass
class PairScores:
    """Scores of pairs (i[k], j[k]) and their evidence."""

    score: F64
    dice: F64
    agree: npt.NDArray[np.bool_]  # (k, types) same token
    disagree: npt.NDArray[np.bool_]  # (k, types) both present, different
    sex_disagree: npt.NDArray[np.bool_]
    age_gap: F64  # |birth_i - birth_j| in years, nan when unknown

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
    score = (
        dice
        + p.token_bonus * agree.any(axis=1)
        - p.token_penalty * disagree.any(axis=1)
        - p.sex_penalty * sex_dis
        - p.age_penalty * far
    )
    return PairScores(score, dice, agree, disagree, sex_dis, gap)
