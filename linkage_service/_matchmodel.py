"""The match model: Fellegi–Sunter match probabilities estimated from the data held.

Owns what a pair's score means. Each candidate pair is described by a
*comparison vector*: one level per comparison, computed from encodings and
coarse attributes only:

===========  =====================================================================
comparison   levels
===========  =====================================================================
person       Dice of the person filters in nine bands (below 0.60 ... 0.95 and
             above), crossed with how many keyed blocking keys agree (0, 1, 2+),
             whether any differs, and the birth years implied by the coarse ages
             (within 1.5 years, further apart, or a date of birth missing): all
             are views of the same names and dates, so they are modelled jointly
             rather than counted two or three times
address      missing, or address-filter Dice in five bands (below 0.70 ... 0.97+)
checked_id   missing, agree, disagree: keyed NHS number, NI number or UPN
local_id     missing, agree, disagree: any other keyed identifier the scheme declares
sex          missing, agree, disagree
===========  =====================================================================

Candidate pairs come from three kinds of pair, not two: records of one person
(matches), records of *related* people (a parent and child, siblings: blocking
on addresses and family names brings every household's members together), and
records of unrelated people. For each comparison the model holds ``m`` (each
level's probability among matches), ``r`` (among related people) and ``u``
(among unrelated people), and the shares ``lam`` and ``rho`` of matches and
related pairs among the candidates. A pair's score is its match probability

    lam * m(g) / (lam * m(g) + rho * r(g) + (1 - lam - rho) * u(g))

where ``m(g)`` is the product over its comparisons' levels (a missing value says
nothing: its level counts 1 in every class). It is a calibrated probability under
the model's assumptions, the same scale on every data set, so one threshold
(0.5) serves all. EM, not the names, decides what each class holds: on the
independent council population the "related" class took 71% of the candidates
(household members and every other non-match that blocking brought together,
alike in more than chance), leaving "unrelated" to pairs like random ones.
Each comparison's weight ``log2(m / u)`` (against unrelated people) and
``log2(m / r)`` (against related ones) explains the score; with two classes
only (``r`` absent, as in a model set by hand) the weights and the prior
``log2(lam / (1 - lam))`` add up to the score's log-odds exactly.

The parameters are estimated without labels by expectation maximisation over
the candidate pairs blocking produced (:func:`estimate`), as Fellegi–Sunter
linkage has done since Winkler, with the third class because a two-class fit on
data with households took parents and children for one person (pairwise
precision 0.89 on our own generator; 0.996 with it). The E step gives each
distinct comparison pattern its class probabilities, the M step re-estimates
every class's parameters and share from the expected counts. Patterns are
counted once (a histogram over some twenty-five thousand patterns), so a
million candidate pairs cost one ``bincount``. ``u`` starts from random record
pairs (almost all unrelated) and is drawn towards them by a Dirichlet prior
worth 1,000 pairs (without it, a single source whose candidates are mostly
duplicates let messy duplicates pass for strangers); ``m`` and ``r`` start from
weakly informative shapes (agreement for matches; one address, other names and
dates for related people); a pseudo-count keeps every level's probability above
zero. A fit that ends with ``m`` no more concentrated than ``u`` and ``r`` on
the person level of two clean copies of one record (the classes swapped, or no
matches found) is refused and the model it would replace stays in force.

Must never: look at anything but encodings and coarse attributes, hold a secret.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "COMPARISONS",
    "Comparison",
    "FitReport",
    "MatchModel",
    "estimate",
    "prior_model",
    "render_markdown",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

PERSON_CUTS = (0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
ADDRESS_CUTS = (0.70, 0.80, 0.90, 0.97)
KEY_LEVELS = 3  # blocking keys agreeing: 0, 1, 2 or more
BIRTH_CLOSE = 1.5  # years between implied birth years that still agree
MODEL_FORMAT = "family-linkage/match-model/v1"


def _bands(cuts: Sequence[float]) -> list[str]:
    edges = [f"{c:.2f}" for c in cuts]
    return (
        [f"<{edges[0]}"]
        + [f"{a}-{b}" for a, b in zip(edges, edges[1:], strict=False)]
        + [f">={edges[-1]}"]
    )


@dataclass(frozen=True)
class Comparison:
    """One comparison: its name, its level labels and which level (if any) means missing."""

    name: str
    levels: tuple[str, ...]
    missing: int | None  # index of the "missing" level (weighs 0), or None


BIRTH = ("close", "far", "missing")  # implied birth years within 1.5 years, further, unknown
# (lowest Dice of the band, blocking keys agreeing, any differing, birth years) of
# each person level, in level order
PERSON_LEVELS: tuple[tuple[float, int, bool, str], ...] = tuple(
    (lo, agree, differ, birth)
    for birth in BIRTH
    for lo in (0.0, *PERSON_CUTS)
    for agree in range(KEY_LEVELS)
    for differ in (False, True)
)
_BIRTH_TEXT = {
    "close": "",
    "far": ", birth years apart",
    "missing": ", a date of birth missing",
}


def _person_levels() -> tuple[str, ...]:
    bands = dict(zip((0.0, *PERSON_CUTS), _bands(PERSON_CUTS), strict=True))
    return tuple(
        f"dice {bands[lo]}, {agree if agree < KEY_LEVELS - 1 else f'{agree}+'} keys agree, "
        f"{'some' if differ else 'none'} differ" + _BIRTH_TEXT[birth]
        for lo, agree, differ, birth in PERSON_LEVELS
    )


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("person", _person_levels(), None),
    Comparison("address", ("missing", *(f"dice {b}" for b in _bands(ADDRESS_CUTS))), 0),
    Comparison("checked_id", ("missing", "agree", "disagree"), 0),
    Comparison("local_id", ("missing", "agree", "disagree"), 0),
    Comparison("sex", ("missing", "agree", "disagree"), 0),
)
SIZES = tuple(len(c.levels) for c in COMPARISONS)
PATTERNS = int(np.prod(SIZES))
if PATTERNS >= 2**15:
    raise RuntimeError("pattern numbers must fit in int16 (see _scoring.pattern_array)")
# mixed-radix place value of each comparison in a pattern number
_PLACE = np.cumprod((1, *SIZES[:0:-1]))[::-1].astype(np.int64)
_PLACE_LIST: list[int] = _PLACE.tolist()
PLACES = tuple(_PLACE_LIST)  # the place values, for the compiled kernel


def person_level(dice: F64, keys_agreed: I64, keys_differing: I64, birth_gap: F64) -> I64:
    """The person comparison's level of each pair.

    Keys that differ tell twins (one family name and date of birth, two given
    names) from one person whose other keys are missing; the birth years implied by
    the ages repeat the date of birth the filter holds, and a missing date of birth
    (no age either) takes its bits out of the filter, so its Dice bands are
    modelled apart.
    """
    band = np.searchsorted(np.asarray(PERSON_CUTS), dice, side="right").astype(np.int64)
    out: I64 = (
        (_birth(birth_gap) * (len(PERSON_CUTS) + 1) + band) * KEY_LEVELS
        + np.minimum(keys_agreed, KEY_LEVELS - 1)
    ) * 2 + (keys_differing > 0)
    return out


def address_level(dice: F64) -> I64:
    """The address comparison's level (0 where either has no address: ``dice`` is nan)."""
    band = np.searchsorted(np.asarray(ADDRESS_CUTS), np.nan_to_num(dice, nan=0.0), side="right")
    out: I64 = np.where(np.isnan(dice), 0, band + 1).astype(np.int64)
    return out


def token_level(agree: npt.NDArray[np.bool_], disagree: npt.NDArray[np.bool_]) -> I64:
    """Missing 0, agree 1, disagree 2 (agreement on one type outweighs a conflict on another)."""
    out: I64 = np.where(agree, 1, np.where(disagree, 2, 0)).astype(np.int64)
    return out


def sex_level(si: npt.NDArray[np.int8], sj: npt.NDArray[np.int8]) -> I64:
    """Missing 0, agree 1, disagree 2."""
    known = (si != 0) & (sj != 0)
    out: I64 = np.where(known, np.where(si == sj, 1, 2), 0).astype(np.int64)
    return out


def _birth(gap: F64) -> I64:
    """Index into :data:`BIRTH`: close 0, far 1, missing 2 (``gap`` nan)."""
    out: I64 = np.where(np.isnan(gap), 2, np.where(np.nan_to_num(gap) <= BIRTH_CLOSE, 0, 1))
    return out.astype(np.int64)


def patterns(levels: Sequence[I64]) -> I64:
    """Pattern numbers from per-comparison levels (in :data:`COMPARISONS` order)."""
    out = np.zeros(levels[0].shape[0], dtype=np.int64)
    for lv, place in zip(levels, _PLACE.tolist(), strict=True):
        out += lv * place
    return out


def unpack(pattern: int) -> tuple[int, ...]:
    """Per-comparison levels of one pattern number."""
    return tuple(int(pattern // p % s) for p, s in zip(_PLACE.tolist(), SIZES, strict=True))


@dataclass(frozen=True)
class FitReport:
    """How an estimation went: the data it saw and whether it converged."""

    candidate_pairs: int
    random_pairs: int
    iterations: int
    converged: bool
    accepted: bool
    reason: str


@dataclass(frozen=True)
class MatchModel:
    """Fellegi–Sunter parameters: ``m``, ``u`` (and ``r``) per comparison level, and priors.

    ``r`` and ``rho`` describe the third class, related people (see the module
    docstring); a model without it is the classic two-class one.
    """

    m: tuple[tuple[float, ...], ...]
    u: tuple[tuple[float, ...], ...]
    lam: float
    trained_on: Mapping[str, float] = field(default_factory=dict)
    r: tuple[tuple[float, ...], ...] | None = None
    rho: float = 0.0

    def __post_init__(self) -> None:
        classes = [("m", self.m), ("u", self.u)] + ([("r", self.r)] if self.r is not None else [])
        for name, params in classes:
            if len(params) != len(COMPARISONS):
                raise ValueError(f"{name}: a match model has {len(COMPARISONS)} comparisons")
            for c, v in zip(COMPARISONS, params, strict=True):
                if len(v) != len(c.levels):
                    raise ValueError(f"{name}: comparison {c.name} has {len(c.levels)} levels")
                if min(v) <= 0:
                    raise ValueError(f"{name}: comparison {c.name}: probabilities must be positive")
        rho = self.rho if self.r is not None else 0.0
        if not (0 < self.lam < 1 and 0 <= rho < 1 and self.lam + rho < 1):
            raise ValueError("lam and rho must be shares of the candidate pairs")
        log_m = self._log_class(self.m) + math.log2(self.lam)
        log_u = self._log_class(self.u) + math.log2(1 - self.lam - rho)
        if self.r is not None and rho > 0:
            log_u = np.logaddexp2(log_u, self._log_class(self.r) + math.log2(rho))
        table = log_m - log_u
        probability = 1.0 / (1.0 + np.exp2(-np.clip(table, -60.0, 60.0)))
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_probability", probability)
        object.__setattr__(self, "_probability_list", probability.tolist())

    @staticmethod
    def _log_class(params: tuple[tuple[float, ...], ...]) -> F64:
        """log2 of each pattern's probability in one class (missing levels count 1)."""
        out = np.zeros(PATTERNS, dtype=np.float64)
        for k, c in enumerate(COMPARISONS):
            v = np.log2(np.asarray(params[k], dtype=np.float64))
            if c.missing is not None:
                v[c.missing] = 0.0
            out += np.repeat(np.tile(v, PATTERNS // (SIZES[k] * _PLACE[k])), _PLACE[k])
        return out

    def level_weights(self, k: int, against: str = "u") -> F64:
        """log2(m/u) (or m/r) of each level of comparison ``k`` (0 for its missing level)."""
        other = self.r if against == "r" and self.r is not None else self.u
        w: F64 = np.log2(np.asarray(self.m[k]) / np.asarray(other[k]))
        missing = COMPARISONS[k].missing
        if missing is not None:
            w[missing] = 0.0
        return w

    @classmethod
    def from_weights(cls, weights: Sequence[Sequence[float]], offset: float) -> MatchModel:
        """A model whose level weights are exactly ``weights`` and whose prior weight is ``offset``.

        For a model set by hand (tests, a scheme that fixes its weights). Each
        comparison needs a level with a positive and one with a negative weight
        (``m`` and ``u`` are both distributions, so ``m/u`` cannot be above 1, or
        below 1, everywhere); a missing level's weight is ignored.
        """
        ms: list[tuple[float, ...]] = []
        us: list[tuple[float, ...]] = []
        for c, w in zip(COMPARISONS, weights, strict=True):
            if len(w) != len(c.levels):
                raise ValueError(f"comparison {c.name} has {len(c.levels)} levels")
            live = [i for i in range(len(c.levels)) if i != c.missing]
            pos = [i for i in live if w[i] > 0]
            neg = [i for i in live if w[i] < 0]
            if not pos or not neg:
                raise ValueError(f"comparison {c.name}: needs a positive and a negative weight")
            # u_i (2^w_i - 1) sums to 0, so m_i = u_i 2^w_i sums to 1 with u
            raw = [0.0] * len(c.levels)
            for i in pos:
                raw[i] = 1.0 / (2.0 ** w[i] - 1.0)
            for i in neg:
                raw[i] = len(pos) / len(neg) / (1.0 - 2.0 ** w[i])
            zero = [i for i in live if w[i] == 0]
            for i in zero:
                raw[i] = min(raw[j] for j in pos + neg)
            z = sum(raw)
            u = [1.0 if i == c.missing else raw[i] / z for i in range(len(c.levels))]
            ms.append(
                tuple(1.0 if i == c.missing else u[i] * 2.0 ** w[i] for i in range(len(c.levels)))
            )
            us.append(tuple(u))
        odds = 2.0 ** max(min(offset, 50.0), -50.0)
        return cls(tuple(ms), tuple(us), odds / (1 + odds), {"estimated": 0.0})

    @property
    def prior_weight(self) -> float:
        """log2 of the prior odds of a match among candidate pairs."""
        return math.log2(self.lam / (1 - self.lam))

    def weights(self, pattern: I64) -> F64:
        """Match weight (log2 odds) of each pattern number."""
        table: F64 = self._table  # type: ignore[attr-defined]
        out: F64 = table[pattern]
        return out

    def probability(self, pattern: I64) -> F64:
        """Match probability of each pattern number."""
        table: F64 = self._probability  # type: ignore[attr-defined]
        out: F64 = table[pattern]
        return out

    def probability_of(self, pattern: int) -> float:
        """Match probability of one pattern number (plain Python, the same value)."""
        out: float = self._probability_list[pattern]  # type: ignore[attr-defined]
        return out

    def explain(self, pattern: int) -> dict[str, dict[str, object]]:
        """Each comparison's level and weight for one pattern: the reason for a score."""
        out: dict[str, dict[str, object]] = {}
        for k, (c, lv) in enumerate(zip(COMPARISONS, unpack(pattern), strict=True)):
            out[c.name] = {
                "level": c.levels[lv],
                "weight": round(float(self.level_weights(k)[lv]), 3),
            }
            if self.r is not None:
                out[c.name]["weight_vs_related"] = round(float(self.level_weights(k, "r")[lv]), 3)
        return out

    def to_json(self) -> dict[str, object]:
        """The parameters as plain JSON (what the service stores per model version)."""
        out: dict[str, object] = {
            "format": MODEL_FORMAT,
            "comparisons": {
                c.name: {
                    "levels": list(c.levels),
                    "m": [round(x, 10) for x in m],
                    "u": [round(x, 10) for x in u],
                }
                for c, m, u in zip(COMPARISONS, self.m, self.u, strict=True)
            },
            "lam": round(self.lam, 10),
            "trained_on": dict(self.trained_on),
        }
        if self.r is not None:
            comps = out["comparisons"]
            assert isinstance(comps, dict)
            for c, r in zip(COMPARISONS, self.r, strict=True):
                comps[c.name]["r"] = [round(x, 10) for x in r]
            out["rho"] = round(self.rho, 10)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> MatchModel:
        """The inverse of :meth:`to_json`; refuses another format or other comparisons."""
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a {MODEL_FORMAT} document")
        comps = data.get("comparisons")
        if not isinstance(comps, dict) or sorted(comps) != sorted(c.name for c in COMPARISONS):
            raise ValueError("the model's comparisons differ from this engine's")
        for c in COMPARISONS:
            if list(comps[c.name]["levels"]) != list(c.levels):
                raise ValueError(f"comparison {c.name}: levels differ from this engine's")
        lam = data.get("lam")
        trained = data.get("trained_on", {})
        if not isinstance(lam, float | int) or not isinstance(trained, dict):
            raise ValueError("lam must be a number and trained_on an object")
        related = all("r" in comps[c.name] for c in COMPARISONS)
        rho = data.get("rho", 0.0)
        if not isinstance(rho, float | int):
            raise ValueError("rho must be a number")
        return cls(
            tuple(tuple(float(x) for x in comps[c.name]["m"]) for c in COMPARISONS),
            tuple(tuple(float(x) for x in comps[c.name]["u"]) for c in COMPARISONS),
            float(lam),
            {str(k): float(v) for k, v in trained.items()},
            tuple(tuple(float(x) for x in comps[c.name]["r"]) for c in COMPARISONS)
            if related
            else None,
            float(rho),
        )

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: the model version runs and links refer to."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _start(
    person: Callable[[int, int, bool, str], float],
    address: float,
    identifier: tuple[float, float, float],
    sex: tuple[float, float, float],
) -> list[F64]:
    """A start for one class: ``person(band, agree, differ, birth)`` gives each person
    level's relative weight, address bands grow by ``2**address`` per band, the
    identifiers' and sex's (missing, agree, disagree) levels weigh as given."""
    out: list[F64] = []
    bands = [0.0, *PERSON_CUTS]
    for c in COMPARISONS:
        n = len(c.levels)
        if c.name == "person":
            v = np.array([person(bands.index(lo), a, d, b) for lo, a, d, b in PERSON_LEVELS])
        elif c.name == "address":
            v = np.exp2(address * np.arange(n, dtype=np.float64))
        else:
            v = np.array(identifier if c.name != "sex" else sex, dtype=np.float64)
        if c.missing is not None:
            v[c.missing] = 0.0
        out.append(v / v.sum())
    return out


def _start_m() -> list[F64]:
    """A weakly informative start for ``m``: agreement likelier than disagreement."""
    return _start(
        lambda band, agree, differ, birth: (
            2.0 ** (1.5 * band + agree - 2 * differ - 4 * (birth == "far"))
        ),
        1.0,
        (1.0, 16.0, 1.0),
        (1.0, 16.0, 1.0),
    )


def _start_r() -> list[F64]:
    """The start of the related class: one address, a family name, other dates and names."""
    return _start(
        lambda band, agree, differ, birth: (
            2.0 ** (-abs(band - 2) + differ + 2 * (birth == "far") - agree)
        ),
        2.0,
        (1.0, 1.0, 16.0),
        (1.0, 1.0, 1.0),
    )


def _em3(
    candidate_counts: F64,
    u_prior: list[F64] | None,
    u_strength: float,
    *,
    pseudo: float,
    max_iterations: int,
    tolerance: float,
) -> tuple[list[F64], list[F64], list[F64], float, float, int, bool]:
    """Three-class EM (matches, related people, unrelated): (m, r, u, lam, rho, iters, converged).

    ``u`` starts at ``u_prior`` (random pairs) and is drawn towards it by a Dirichlet
    prior worth ``u_strength`` pairs; ``m`` and ``r`` start from :func:`_start_m`
    and :func:`_start_r`.
    """
    n_cand = float(candidate_counts.sum())
    observed = np.flatnonzero(candidate_counts)
    counts = candidate_counts[observed]
    levels = [lv[observed] for lv in _LEVEL_INDEX]
    m, r = _start_m(), _start_r()
    u = u_prior if u_prior is not None else _distributions(candidate_counts, pseudo)
    shares = np.array([0.1, 0.1, 0.8])
    converged = False
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        logs = np.zeros((3, observed.size))
        for x, params in enumerate((m, r, u)):
            for k, c in enumerate(COMPARISONS):
                v = params[k].copy()
                if c.missing is not None:
                    v[c.missing] = 1.0
                logs[x] += np.log(v[levels[k]])
            logs[x] += np.log(shares[x])
        post = np.exp(logs - np.logaddexp.reduce(logs, axis=0))
        weighted = counts * post  # expected pairs of each class, per observed pattern
        new_shares = np.clip(weighted.sum(axis=1) / n_cand, 1e-6, None)
        new_shares /= new_shares.sum()
        new_m = _distributions(weighted[0], pseudo, levels=levels)
        new_r = _distributions(weighted[1], pseudo, levels=levels)
        new_u = _distributions(weighted[2], pseudo, u_prior, u_strength, levels=levels)
        change = max(
            float(np.abs(new_shares - shares).max()),
            *(
                float(np.abs(x - y).max())
                for new, old in ((new_m, m), (new_r, r), (new_u, u))
                for x, y in zip(new, old, strict=True)
            ),
        )
        m, r, u, shares = new_m, new_r, new_u, new_shares
        if change < tolerance:
            converged = True
            break
    return m, r, u, float(shares[0]), float(shares[1]), iterations, converged


def _distributions(
    counts: F64,
    pseudo: float,
    prior: list[F64] | None = None,
    strength: float = 0.0,
    levels: list[I64] | None = None,
) -> list[F64]:
    """Per-comparison level distributions of pattern ``counts`` (missing levels excluded).

    ``pseudo`` is added to every level; ``strength`` pairs distributed as ``prior``
    are added too (a Dirichlet prior). With ``levels`` (each comparison's level of
    some patterns), ``counts`` are of those patterns only.
    """
    out: list[F64] = []
    index = levels if levels is not None else _LEVEL_INDEX
    for k, c in enumerate(COMPARISONS):
        per_level = np.bincount(index[k], weights=counts, minlength=SIZES[k]).astype(np.float64)
        per_level += pseudo
        if prior is not None:
            per_level += strength * prior[k]
        if c.missing is not None:
            per_level[c.missing] = 0.0
        out.append(per_level / per_level.sum())
    return out


def _with_missing(dists: list[F64]) -> tuple[tuple[float, ...], ...]:
    """Distributions as model parameters: a missing level gets 1.0 (it weighs 0 either way)."""
    out = []
    for c, d in zip(COMPARISONS, dists, strict=True):
        v = d.copy()
        if c.missing is not None:
            v[c.missing] = 1.0
        out.append(tuple(float(x) for x in v))
    return tuple(out)


def _level_index() -> list[I64]:
    return [
        ((np.arange(PATTERNS) // _PLACE[k]) % SIZES[k]).astype(np.int64)
        for k in range(len(COMPARISONS))
    ]


_LEVEL_INDEX = _level_index()  # each comparison's level of every pattern number


def prior_model(random_counts: F64 | None = None) -> MatchModel:
    """The model before any estimation: the EM start (``u`` from random pairs when given)."""
    m = _start_m()
    if random_counts is not None and random_counts.sum() > 0:
        u = _distributions(random_counts, 1.0)
    else:
        u = [np.where(np.arange(len(d)) == np.argmax(d), 0.0, 1.0) + 1e-3 for d in m]
        u = [_fix_missing(c, x) for c, x in zip(COMPARISONS, u, strict=True)]
    return MatchModel(_with_missing(m), _with_missing(u), 0.01, {"estimated": 0.0})


def _fix_missing(c: Comparison, v: F64) -> F64:
    w = v.copy()
    if c.missing is not None:
        w[c.missing] = 0.0
    out: F64 = w / w.sum()
    return out


def estimate(
    candidate_counts: F64,
    random_counts: F64,
    *,
    max_iterations: int = 2000,
    tolerance: float = 1e-7,
    pseudo: float = 1.0,
    min_pairs: int = 200,
    u_strength: float = 1000.0,
) -> tuple[MatchModel | None, FitReport]:
    """Estimate a model from pattern histograms of candidate pairs and of random pairs.

    Returns ``(model, report)``; the model is None when the fit is refused (too few
    candidate pairs, or an estimate that is not a match model: see the module
    docstring), and the report says why.
    """
    n_cand, n_rand = float(candidate_counts.sum()), float(random_counts.sum())
    if n_cand < min_pairs:
        return None, FitReport(
            int(n_cand), int(n_rand), 0, False, False, f"only {int(n_cand)} candidate pairs"
        )
    u_start = _distributions(random_counts, pseudo) if n_rand else None
    m, r, u, lam, rho, iterations, converged = _em3(
        candidate_counts,
        u_start,
        u_strength,
        pseudo=pseudo,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )
    # the person level of two clean copies: the match class must favour it
    top = PERSON_LEVELS.index((PERSON_CUTS[-1], KEY_LEVELS - 1, False, "close"))
    trained = {
        "estimated": 1.0,
        "candidate_pairs": n_cand,
        "random_pairs": n_rand,
        "iterations": float(iterations),
    }
    model = MatchModel(_with_missing(m), _with_missing(u), lam, trained, _with_missing(r), rho)
    if lam * n_cand < 10 or m[0][top] <= max(u[0][top], r[0][top]):
        return None, FitReport(
            int(n_cand),
            int(n_rand),
            iterations,
            converged,
            False,
            "the estimate does not separate matches (fewer than 10 expected, or m <= u "
            "for two clean copies of one person)",
        )
    return model, FitReport(int(n_cand), int(n_rand), iterations, converged, True, "accepted")


def render_markdown(model: MatchModel, title: str = "Match model") -> str:
    """The model as a Markdown card: every level's m, r, u and weights, and the class shares."""
    trained = model.trained_on
    related = model.r is not None
    lines = [
        f"# {title}",
        "",
        f"Version `{model.fingerprint()[:16]}` ({MODEL_FORMAT}). "
        + (
            f"Estimated by EM from {int(trained.get('candidate_pairs', 0)):,} candidate pairs "
            f"and {int(trained.get('random_pairs', 0)):,} random pairs over "
            f"{int(trained.get('records', 0)):,} records in "
            f"{int(trained.get('iterations', 0))} iterations."
            if trained.get("estimated")
            else "Set by hand, not estimated."
        ),
        "",
        f"Candidate pairs: {model.lam:.2%} matches"
        + (
            f", {model.rho:.2%} related people, {1 - model.lam - model.rho:.2%} unrelated. "
            "A pair's score is its match probability lam m / (lam m + rho r + (1 - lam - rho) u), "
            "each class's probability the product over the pair's comparison levels. "
            if related
            else ". A pair's match weight is the prior "
            f"({model.prior_weight:+.2f} bits) plus the weight of each comparison's level; "
            "its score is the probability 1 / (1 + 2^-weight). "
        )
        + "A missing value counts 1 in every class (weight 0).",
        "",
    ]
    columns = ["m", "r", "u"] if related else ["m", "u"]
    weight_columns = ["weight vs unrelated", "vs related"] if related else ["weight (bits)"]
    header = ["level", *columns, *weight_columns]
    for k, c in enumerate(COMPARISONS):
        lines += [f"## {c.name}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        weights = [model.level_weights(k)] + ([model.level_weights(k, "r")] if related else [])
        params = [model.m[k]] + ([model.r[k]] if model.r is not None else []) + [model.u[k]]
        for i, level in enumerate(c.levels):
            if i == c.missing:
                cells = ["-"] * len(columns) + ["0"] * len(weight_columns)
            else:
                cells = [f"{p[i]:.4g}" for p in params] + [f"{w[i]:+.2f}" for w in weights]
            lines.append(f"| {level} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
