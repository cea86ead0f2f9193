"""The matching engine: records into persons, persons into households, incrementally.

Owns the in-memory linkage state of the service and its one operation,
:meth:`LinkageEngine.update`: link the added records against everything held,
retire removed ones, and report what changed as a :class:`Delta`. Linking from
scratch is an update of an empty engine. Stages:

1. blocking (:mod:`._blocking`): Hamming LSH bands over the person filter, the
   agencies' keyed blocking keys and keyed exact tokens; only pairs with at least
   one added record are generated;
2. scoring (:mod:`._scoring`): Dice on the person filter with the kernel, plus
   exact-token, sex and age evidence; candidates are scored a slice at a time
   and only pairs reaching the review band are kept (nothing later looks at the
   others);
3. clustering (:mod:`._cluster`): constrained agglomeration; held persons are
   kept as units and only grow by merges that keep every cross pair coherent;
   persons that lost records are re-clustered on their own (which may split them);
4. households (:mod:`._households`): address places, each person's current place,
   households and families;
5. ids: every new group of records keeps the id most of its records had
   (merges and splits are reported), so a new extract never renumbers the world.

Clerical decisions (:meth:`LinkageEngine.set_decisions`) bind every update:
a ``match`` pair is a must-link (its records' persons are merged before any
scored edge), a ``non_match`` pair a cannot-link (its edge is dropped and the
cohesion check refuses any merge that would put the two records in one
person; a person holding both is split at the next update). Decided pairs
never enter the review queue, and their evidence names the decision.

Must never: do I/O, log record content, hold a secret or a plaintext identifier.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import operator
import os
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt
import orjson

from protocols import gc_paused

from ._batch import RecordBatch, token_code
from ._blocking import (
    BlockSpec,
    band_positions,
    block_codes,
    block_order,
    decode_pairs,
    distinct,
    distinct_rows,
    lsh_signatures,
    threaded_map,
    unique_codes,
)
from ._cluster import Clusters, agglomerate, agglomerate_by_dice, pairs_within
from ._households import current_row, current_rows, dependents_or_expectants
from ._matchmodel import FitReport, MatchModel, estimate, prior_model
from ._scoring import (
    CohesionCheck,
    Features,
    PairScores,
    birth_width,
    birth_years,
    kernel,
    pattern_array,
    pattern_counts,
    pattern_histogram,
    score_pairs,
    score_pairs_above,
)

if TYPE_CHECKING:
    from ._distributed import DaskPairs

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
_CHUNK = 1 << 18  # pairs scored at a time (bounded temporaries)
K = TypeVar("K", bound=Hashable)
_T = TypeVar("_T", bound=np.generic)
_V = TypeVar("_V")
EXACT_TYPES = ("nhs_number", "ni_number", "upn")  # checked identifiers (check digits)


@dataclass(frozen=True)
class EngineConfig:
    """Thresholds and blocking parameters. The defaults are the shipped values.

    Scores are match probabilities (:mod:`._matchmodel`), so the thresholds mean
    the same on every data set; nothing here was fitted to one.
    """

    match_threshold: float = 0.5  # match probability at or above: same person (Bayes' rule)
    review_threshold: float = 0.05  # at or above (below match): clerical review
    # a cross pair below this forbids a merge; judged at even prior odds when most
    # candidates are matches (see LinkageEngine._person_floor)
    nonmatch_threshold: float = 0.01
    address_threshold: float = 0.97  # address-filter Dice at or above: same place
    address_nonmatch_threshold: float = 0.9  # ditto for places
    # two addresses of one person's records at or above this are one place written
    # two ways (a typo, a blank postcode); neighbours on one street score about 0.75
    address_person_threshold: float = 0.82
    search_dice: float = 0.7  # subject access: person-filter Dice worth returning
    # the match model is (re)estimated when none was, or when the records held have
    # grown by this factor since it was; from at least train_min_pairs candidates
    retrain_growth: float = 2.0
    train_min_pairs: int = 200
    random_pairs: int = 200_000  # record pairs sampled for the non-match start of EM
    lsh_bands: int = 14
    lsh_bits: int = 22
    address_lsh_bands: int = 4
    address_lsh_bits: int = 30
    block_window: int = 40  # neighbours each side within an oversized block
    address_window: int = 4  # the same for address bands (a street is one block)
    address_person_window: int = 6  # persons paired through an address band
    address_person_bands: int = 4  # of the address bands, how many pair persons
    lsh_seed: int = 20261122

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of the configuration (for run records)."""
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


PairEvidence = tuple[int, int, float, dict[str, object]]
_COLUMNS = (
    "a",
    "b",
    "score",
    "pattern",
    "dice",
    "agree",
    "conflict",
    "sex",
    "gap",
    "ka",
    "kd",
    "addr",
)


def _names(mask: int, names: Sequence[str]) -> list[str]:
    return [name for t, name in enumerate(names) if mask >> t & 1]


class Evidence(Sequence[PairEvidence]):
    """Pairs with their evidence, ``(record a, record b, score, evidence dict)``, built on access.

    Held as numpy columns: a million links as tuples of dicts would cost about
    half a gigabyte, and the service only streams them into the database. The
    evidence names the match model version and explains the score comparison by
    comparison (level and weight in bits), so every link says why it was made.
    """

    _CHUNK = 1 << 14

    def __init__(
        self,
        model: MatchModel | None,
        token_names: Sequence[str],
        *columns: npt.NDArray[np.generic],
        decisions: Mapping[tuple[int, int], bool] | None = None,
    ) -> None:
        self._model = model
        self._decisions = dict(decisions or {})
        self._model_id = model.fingerprint()[:16] if model is not None else None
        self._token_names = tuple(token_names)
        self._cols = dict(zip(_COLUMNS, columns, strict=True))

    def __len__(self) -> int:
        return int(self._cols["a"].shape[0])

    @overload
    def __getitem__(self, k: int) -> PairEvidence: ...

    @overload
    def __getitem__(self, k: slice) -> list[PairEvidence]: ...

    def __getitem__(self, k: int | slice) -> PairEvidence | list[PairEvidence]:
        if isinstance(k, slice):
            return [self[x] for x in range(*k.indices(len(self)))]
        if not -len(self) <= k < len(self):
            raise IndexError(f"evidence index {k} out of range for {len(self)} pairs")
        return next(self._rows(k % len(self), k % len(self) + 1))

    def __iter__(self) -> Iterator[PairEvidence]:
        for lo in range(0, len(self), self._CHUNK):
            yield from self._rows(lo, lo + self._CHUNK)

    def json_rows(self) -> Iterator[tuple[int, int, float, str]]:
        """The pairs with their evidence as the service stores it: ``(a, b, score, JSON)``.

        The JSON is what ``orjson`` writes of each evidence dict with sorted keys (a
        test holds the two to each other), but each pattern's comparisons and each
        set of token names is serialised once and included as it is: for a 1M
        push's 700,000 links, about 1.6 s rather than 3.4-3.9 s (ad hoc, one core).
        """
        model, names = self._model, self._token_names
        explained: dict[int, orjson.Fragment] = {}
        named: dict[int, orjson.Fragment] = {}

        def comparisons(pattern: int) -> object:
            if pattern not in explained:
                assert model is not None
                text = orjson.dumps(model.explain(pattern), option=orjson.OPT_SORT_KEYS)
                explained[pattern] = orjson.Fragment(text)
            return explained[pattern]

        def tokens(mask: int) -> object:
            if mask not in named:
                named[mask] = orjson.Fragment(orjson.dumps(_names(mask, names)))
            return named[mask]

        for lo in range(0, len(self), self._CHUNK):
            for a, b, score, evidence in self._rows(lo, lo + self._CHUNK, comparisons, tokens):
                yield (a, b, score, orjson.dumps(evidence).decode())

    def _rows(
        self,
        lo: int,
        hi: int,
        comparisons: Callable[[int], object] | None = None,
        tokens: Callable[[int], object] | None = None,
    ) -> Iterator[PairEvidence]:
        """Pairs ``lo:hi``; each evidence dict's keys in sorted order (:meth:`json_rows`
        writes them as they come). ``comparisons(pattern)`` and ``tokens(mask)``
        give those values (by default the model's explanation, shared by the pairs
        of a pattern, and a list of token names)."""
        cols = [self._cols[name][lo:hi].tolist() for name in _COLUMNS]
        model, names = self._model, self._token_names
        if comparisons is None:
            explained: dict[int, dict[str, dict[str, object]]] = {}

            def comparisons(pattern: int) -> object:
                assert model is not None
                if pattern not in explained:
                    explained[pattern] = model.explain(pattern)
                return explained[pattern]

        if tokens is None:

            def tokens(mask: int) -> object:
                return _names(mask, names)

        prior = None if model is None else round(model.prior_weight, 3)
        for a, b, score, pat, dice, ag, co, sx, gap, ka, kd, ad in zip(*cols, strict=True):
            evidence: dict[str, object] = {
                "address_dice": None if ad != ad else ad,
                "birth_year_gap": None if gap != gap else gap,
                "blocking_keys_agreed": ka,
                "blocking_keys_differing": kd,
            }
            decided = self._decisions.get((a, b) if a < b else (b, a))
            if decided is not None:
                evidence["clerical_decision"] = "match" if decided else "non_match"
            if model is not None:
                evidence["comparisons"] = comparisons(pat)
            evidence["dice"] = dice
            if model is not None:
                evidence["match_model"] = self._model_id
                evidence["prior_weight"] = prior
            evidence["probability"] = score
            evidence["sex_disagrees"] = sx
            evidence["tokens_agreed"] = tokens(ag)
            evidence["tokens_conflicting"] = tokens(co)
            yield (a, b, score, evidence)


def _empty_evidence() -> Evidence:
    e = np.zeros(0)
    return Evidence(None, (), *([e] * len(_COLUMNS)))


@dataclass
class Delta:
    """What one update changed."""

    person_of: dict[int, str] = field(default_factory=dict)
    persons_retired: list[str] = field(default_factory=list)
    merges: list[tuple[str, str]] = field(default_factory=list)
    splits: list[tuple[str, str]] = field(default_factory=list)
    household_of: dict[str, str] = field(default_factory=dict)
    households_retired: list[str] = field(default_factory=list)
    household_merges: list[tuple[str, str]] = field(default_factory=list)
    household_splits: list[tuple[str, str]] = field(default_factory=list)
    families: dict[str, bool] = field(default_factory=dict)
    # ids given out by this update that the engine did not hold before it (made
    # now, or an old id coming back): every other id in person_of and household_of
    # was live before, so the store needs to create or revive only these
    persons_unheld: set[str] = field(default_factory=set)
    households_unheld: set[str] = field(default_factory=set)
    # of those, the ids this update made: random (:func:`random_ids`), so no store
    # holds them and the store creates them without looking them up first
    persons_made: set[str] = field(default_factory=set)
    households_made: set[str] = field(default_factory=set)
    links: Sequence[PairEvidence] = field(default_factory=_empty_evidence)
    review: Sequence[PairEvidence] = field(default_factory=_empty_evidence)
    stats: dict[str, float] = field(default_factory=dict)
    model: MatchModel | None = None  # a newly estimated match model, when this update made one
    fit: FitReport | None = None  # how the estimation went, when one was tried


def default_threads() -> int:
    """Threads for blocking in this process: the cores this process may use, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


def random_ids(prefix: str, k: int) -> list[str]:
    """``k`` ids, each ``prefix`` + 16 random hex digits, from one read of ``8 * k`` bytes
    from the OS (``os.urandom``).

    An id at a time was three calls and a lock an id, about a third of naming a
    large link's persons (a system call an id, ``secrets.token_hex``, before
    that). Nothing is kept between calls, so a forked child never repeats its
    parent's ids.
    """
    digits = os.urandom(8 * k).hex()
    return [prefix + digits[at : at + 16] for at in range(0, 16 * k, 16)]


def _address_codes(
    addr: npt.NDArray[np.uint64], present: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint64]:
    """A uint64 hash of each whole address filter (0 where absent)."""
    words = addr.shape[1]
    mult = (np.arange(1, words + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (addr * mult).sum(axis=1, dtype=np.uint64)
    out: npt.NDArray[np.uint64] = np.where(present, h | np.uint64(1), np.uint64(0))
    return out


def _grow(
    held: npt.NDArray[_T], more: npt.NDArray[_T], room: dict[object, npt.NDArray[Any]], key: object
) -> npt.NDArray[_T]:
    """``held`` with the rows ``more`` appended; ``more`` itself when nothing is held.

    The result is a view of the first rows of a larger buffer, kept in ``room``
    under ``key``: rows that fit are written after the rows held, in place, rather
    than every row held being copied (the seven pushes of a quarterly refresh
    copied the filters and signatures of a million rows seven times, most of
    the time they spent retiring and re-clustering). A buffer made anew holds
    half as many rows again as needed; the part not written yet costs address
    space, not memory. A ``held`` that is not a view of the buffer (replaced
    since) starts a new one.
    """
    n, k = held.shape[0], more.shape[0]
    if n == 0:
        room.pop(key, None)
        return more
    buf = room.get(key)
    if buf is None or held.base is not buf or buf.shape[0] < n + k:
        buf = np.empty((n + k + (n + k) // 2, *held.shape[1:]), dtype=held.dtype)
        buf[:n] = held
        room[key] = buf
    buf[n : n + k] = more
    out: npt.NDArray[_T] = buf[: n + k]
    return out


def reconcile(
    groups: Sequence[Sequence[K]],
    prev: Callable[[K], str | None],
    new_ids: Callable[[int], list[str]],
    touched: set[str],
    age: Mapping[str, int] | None = None,
) -> tuple[list[str], list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Give every group an id, keeping the old id most of its members had.

    Old ids are given out greedily: the (members, old id, group) with the most
    members first, and between two old ids with as many members in a group, the
    older one (lower ``age``: the order ids were made in; 0 when not listed), so
    a group that split and came back together keeps the id it had, not the one
    the split made; then by old id; then, between groups holding as many of an
    id's members, the group with fewer members of other old ids (so when a
    family's members part, the id stays with those who are among their own, not
    with one who joined a neighbour's group, whose id that group can keep); then
    by group. A group whose members had one old
    id that no other group's members had (most groups) keeps it without taking
    part in that ordering: nothing else claims either.

    Returns (id per group, retired old ids, merges (old, into), splits (old, the id of a
    group now holding some of its records while the old id lives on)).
    ``touched`` are old ids that may have disappeared (e.g. all their records removed).
    ``new_ids(k)`` makes ``k`` new ids at once, handed out in group order.
    """
    olds = list(map(prev, itertools.chain.from_iterable(groups)))
    if olds.count(None) == len(olds):
        # nobody had an id (a first link): every group is new, nothing split or merged
        return new_ids(len(groups)), sorted(touched), [], []
    born = age or {}
    counts: list[dict[str, int]] = []
    each = iter(olds)
    for g in groups:
        c: dict[str, int] = {}
        for p in itertools.islice(each, len(g)):
            if p is not None:
                c[p] = c.get(p, 0) + 1
        counts.append(c)
    spread = collections.Counter(itertools.chain.from_iterable(counts))  # groups per old id
    ids: list[str | None] = [None] * len(groups)
    kept: set[str] = set()
    contested: list[int] = []
    for gi, c in enumerate(counts):
        if len(c) == 1:
            (old,) = c
            if spread[old] == 1:
                ids[gi] = old
                kept.add(old)
                continue
        if c:
            contested.append(gi)
    held = [sum(c.values()) for c in counts]
    claims = sorted(
        (-n, born.get(old, 0), old, held[gi] - n, gi)
        for gi in contested
        for old, n in counts[gi].items()
    )
    for _, _, old, _, gi in claims:
        if ids[gi] is None and old not in kept:
            ids[gi] = old
            kept.add(old)
    splits: list[tuple[str, str]] = []
    final: list[str] = []
    fresh = iter(new_ids(ids.count(None)))
    for gi, assigned in enumerate(ids):
        if assigned is None:
            assigned = next(fresh)
        # records of an id that lives on elsewhere now belong here: that id split
        # (into a new group, or into one that kept its own id after a re-link)
        c = counts[gi]
        if c and (len(c) > 1 or assigned not in c):
            for old in sorted(c):
                if old in kept and old != assigned:
                    splits.append((old, assigned))
        final.append(assigned)
    retired = sorted((touched | spread.keys()) - kept)
    # a retired old id was in contested groups only (an uncontested one is kept)
    best: dict[str, tuple[int, str]] = {}
    for gi in contested:
        for old, n in counts[gi].items():
            if old not in kept and (n, final[gi]) > best.get(old, (0, "")):
                best[old] = (n, final[gi])
    merges = [(old, best[old][1]) for old in retired if old in best]
    return final, retired, merges, splits


class LinkageEngine:
    """In-memory linkage state with incremental updates (see the module docstring)."""

    def __init__(
        self,
        config: EngineConfig = EngineConfig(),
        *,
        id_factory: Callable[[str], str] | None = None,
        model: MatchModel | None = None,
        pairs: DaskPairs | None = None,
        threads: int | None = None,
    ) -> None:
        self.config = config
        # blocking keys worked through at once in this process (the kernels let go
        # of the interpreter lock); None: one a core, up to 4. The links are the same.
        self.threads = default_threads() if threads is None else threads
        # where blocking and scoring run: in this process (None) or as Dask tasks
        # (:mod:`._distributed`); the results are the same either way
        self.pairs = pairs
        # the match model in force; None until estimated or given (scores then use
        # the EM start, see _matchmodel.prior_model)
        self.model: MatchModel | None = model
        self._prior: MatchModel | None = None
        self._id_factory = id_factory  # None: random ids (random_ids)
        self._positions = band_positions(1024, config.lsh_bands, config.lsh_bits, config.lsh_seed)
        self._addr_positions = band_positions(
            1024, config.address_lsh_bands, config.address_lsh_bits, config.lsh_seed + 1
        )
        self._n = 0
        self._words = 16
        self.ids = np.zeros(0, dtype=np.int64)
        self.clk = np.zeros((0, self._words), dtype=np.uint64)
        self.addr = np.zeros((0, self._words), dtype=np.uint64)
        self.has_addr = np.zeros(0, dtype=np.bool_)
        self.exact = np.zeros((0, len(EXACT_TYPES)), dtype=np.uint64)
        self.exact_names: list[str] = list(EXACT_TYPES)  # then local identifiers, as seen
        self.block_keys: dict[str, npt.NDArray[np.uint64]] = {}
        self.lsh = np.zeros((0, config.lsh_bands), dtype=np.uint64)
        self.addr_lsh = np.zeros((0, config.address_lsh_bands), dtype=np.uint64)
        self.addr_code = np.zeros(0, dtype=np.uint64)
        self.age = np.zeros(0, dtype=np.int16)
        self.sex = np.zeros(0, dtype=np.int8)
        self.day = np.zeros(0, dtype=np.int32)
        self.dep = np.zeros(0, dtype=np.bool_)
        self.exp = np.zeros(0, dtype=np.bool_)
        self.birth = np.zeros(0, dtype=np.float64)
        self.birth_width = np.zeros(0, dtype=np.float64)
        self.alive = np.zeros(0, dtype=np.bool_)
        # the buffers the columns above are views of, with room to grow (_grow)
        self._room: dict[object, npt.NDArray[Any]] = {}
        self._id_index: tuple[I64, I64] | None = None  # (sorted ids, their rows), alive rows
        self.row_pid: list[str | None] = []
        self.persons = Clusters()
        self.places = Clusters()
        self.pid_root: dict[str, int] = {}
        self.base_row: dict[str, int | None] = {}  # row of the person's own current address
        self.chosen_row: dict[str, int] = {}  # a row of the place the person lives at
        self._unplaced: set[str] = set()  # persons loaded without a household
        self.person_hid: dict[str, str] = {}
        # the order ids were made in by updates after the first (ids of the first
        # load, or loaded from the database, count as oldest): ties in reconcile
        # keep the older id
        self._born: dict[str, int] = {}
        self._births = False
        self.hid_persons: dict[str, set[str]] = {}
        # clerical decisions by record-id pair (lo, hi): True must-link, False cannot-link
        self.decisions: dict[tuple[int, int], bool] = {}
        self._cannot: dict[int, set[int]] = {}
        self._decisions_due: set[tuple[int, int]] = set()  # changed since the last update
        # address bands' block orders, shared by persons and places within one update
        self._band_orders: dict[int, tuple[I64, U64]] | None = None

    def set_decisions(self, decisions: Mapping[tuple[int, int], str]) -> None:
        """The clerical decisions in force: ``(record a, record b) -> "match" | "non_match"``.

        Replaces the decisions held; those new or changed are applied at the next
        update (a person holding a cannot-linked pair is split then), and all of
        them bind every update after.
        """
        new: dict[tuple[int, int], bool] = {}
        for (a, b), decision in decisions.items():
            if decision not in ("match", "non_match"):
                raise ValueError(f"decision on ({a}, {b}) is {decision!r}, not match or non_match")
            if a == b:
                raise ValueError(f"decision on record {a} against itself")
            new[(a, b) if a < b else (b, a)] = decision == "match"
        self._decisions_due |= {
            k for k in new.keys() | self.decisions.keys() if new.get(k) != self.decisions.get(k)
        }
        self.decisions = new
        cannot: dict[int, set[int]] = {}
        for (a, b), match in new.items():
            if not match:
                cannot.setdefault(a, set()).add(b)
                cannot.setdefault(b, set()).add(a)
        self._cannot = cannot

    def adopt_model(self, stored: Mapping[str, object]) -> None:
        """Use a stored match model (its :meth:`MatchModel.to_json` form) from now on."""
        self.model = MatchModel.from_json(stored)

    # ------------------------------------------------------------------ read helpers
    def person_records(self, person_id: str) -> list[int]:
        """Record ids of a person (empty if unknown)."""
        root = self.pid_root.get(person_id)
        if root is None:
            return []
        return sorted(int(self.ids[r]) for r in self.persons.members(root) if self.alive[r])

    def record_persons(self, record_ids: Sequence[int]) -> dict[int, str]:
        """The person of each live record among ``record_ids`` (others are left out)."""
        ids = np.asarray(record_ids, dtype=np.int64)
        out: dict[int, str] = {}
        for x, r in zip(ids.tolist(), self._alive_rows_of(ids).tolist(), strict=True):
            pid = self.row_pid[r] if r >= 0 else None
            if pid is not None:
                out[x] = pid
        return out

    def household_persons(self, household_id: str) -> list[str]:
        """Person ids of a household (empty if unknown)."""
        return sorted(self.hid_persons.get(household_id, ()))

    def search(
        self, clk: bytes, exact: Mapping[str, bytes], threshold: float | None = None
    ) -> list[tuple[int, float, str | None]]:
        """Live records that may be the person encoded by ``clk`` / ``exact`` (subject access).

        A record is returned when its person filter's Dice with ``clk`` is at least
        ``threshold`` (the review threshold by default: subject access wants every
        record that may concern the person, not only certain links) or when a keyed
        exact token agrees. Returns ``(record id, dice, person id)``, best first.
        """
        limit = self.config.search_dice if threshold is None else threshold
        found: dict[int, float] = {}
        if self._n and len(clk) == 8 * self._words:
            query = np.frombuffer(clk, dtype="<u8").reshape(1, self._words).astype(np.uint64)
            _i, rows, scores = kernel.dice_above(query, self.clk, limit)
            for r, sc in zip(rows.tolist(), scores.tolist(), strict=True):
                if self.alive[r]:
                    found[int(r)] = float(sc)
            for t, name in enumerate(self.exact_names):
                token = exact.get(name)
                if token:
                    code = np.uint64(token_code(token))
                    for r in np.flatnonzero((self.exact[:, t] == code) & self.alive).tolist():
                        if int(r) not in found:
                            found[int(r)] = float(
                                kernel.dice_pairs(
                                    query, self.clk, np.zeros(1, np.int64), np.array([r])
                                )[0]
                            )
        ordered = sorted(found.items(), key=lambda x: (-x[1], x[0]))
        return [(int(self.ids[r]), sc, self.row_pid[r]) for r, sc in ordered]

    # ------------------------------------------------------------------ state loading
    @classmethod
    @gc_paused()
    def from_state(
        cls,
        batch: RecordBatch,
        person_of: dict[int, str],
        household_of: dict[str, str],
        config: EngineConfig = EngineConfig(),
        *,
        id_factory: Callable[[str], str] | None = None,
        model: MatchModel | None = None,
        decisions: Mapping[tuple[int, int], str] | None = None,
        pairs: DaskPairs | None = None,
    ) -> LinkageEngine:
        """Rebuild from what the database holds, without relinking persons.

        Every record of ``batch`` must have a person in ``person_of``; persons missing
        from ``household_of`` are placed by their current address at the next update
        (reported in that update's ``household_of``).
        Address places are recomputed (deterministic, from the address filters).
        ``decisions`` are the clerical decisions in force (:meth:`set_decisions`).
        ``pairs``: run blocking and scoring as Dask tasks (see :class:`LinkageEngine`).
        The cyclic garbage collector is paused meanwhile (:func:`protocols.gc_paused`).
        """
        eng = cls(config, id_factory=id_factory, model=model, pairs=pairs)
        if decisions:
            eng.set_decisions(decisions)
        missing = [int(i) for i in batch.ids.tolist() if int(i) not in person_of]
        if missing:
            raise ValueError(f"{len(missing)} records have no person, e.g. record id {missing[0]}")
        rows = eng._append(batch)
        by_pid: dict[str, list[int]] = {}
        for r in rows.tolist():
            pid = person_of[int(eng.ids[r])]
            eng.row_pid[r] = pid
            by_pid.setdefault(pid, []).append(r)
        for pid, rs in by_pid.items():
            eng.pid_root[pid] = eng.persons.add(rs)
        is_new = np.ones(eng._n, dtype=np.bool_)
        eng._link_places(is_new)
        eng._join_places_by_person(by_pid)
        view = _PlaceView(eng)  # places, persons and liveness stand still from here
        eng.base_row.update(view.current_rows(by_pid))
        for pid in by_pid:
            row = eng._follow(pid, view)
            if row is not None:
                eng.chosen_row[pid] = row
            hid = household_of.get(pid)
            if hid is not None:
                eng.person_hid[pid] = hid
                eng.hid_persons.setdefault(hid, set()).add(pid)
            else:
                eng._unplaced.add(pid)
        return eng

    def _append(self, batch: RecordBatch) -> I64:
        """Append a batch's columns; returns the new rows."""
        n0, k = self._n, len(batch)
        if batch.clk.shape[1] != self._words and k:
            raise ValueError(
                f"person filters have {batch.clk.shape[1]} words, expected {self._words}"
            )
        addr = (
            np.ascontiguousarray(batch.address_clk, dtype=np.uint64)
            if k
            else np.zeros((0, self._words), dtype=np.uint64)
        )
        clk = np.ascontiguousarray(batch.clk, dtype=np.uint64)
        if k and addr.shape[1] != self._words:
            raise ValueError(f"address filters have {addr.shape[1]} words, expected {self._words}")
        clk_present = kernel.popcounts(clk) > 0 if k else np.zeros(0, dtype=np.bool_)
        for name in sorted(batch.exact):
            if name not in self.exact_names:
                self.exact_names.append(name)
                self.exact = np.hstack([self.exact, np.zeros((n0, 1), dtype=np.uint64)])
        exact = np.zeros((k, len(self.exact_names)), dtype=np.uint64)
        for t, name in enumerate(self.exact_names):
            if name in batch.exact:
                exact[:, t] = batch.exact[name]
        for name in batch.blocking:
            if name not in self.block_keys:
                self.block_keys[name] = np.zeros(n0, dtype=np.uint64)
        for name in list(self.block_keys):
            col = batch.blocking.get(name, np.zeros(k, np.uint64)).astype(np.uint64)
            self.block_keys[name] = _grow(self.block_keys[name], col, self._room, ("key", name))
        grow = self._grow_column
        grow("ids", batch.ids.astype(np.int64))
        has_addr = batch.has_address & (kernel.popcounts(addr) > 0) if k else batch.has_address
        if n0 == 0:
            # the first batch's filters are kept as they are (a million rows: 250 MB
            # not copied), read-only so that nobody changes them under the engine
            clk.flags.writeable = False
            addr.flags.writeable = False
        grow("clk", clk)
        grow("addr", addr)
        grow("has_addr", has_addr)
        grow("exact", exact)
        grow("lsh", lsh_signatures(clk, self._positions, clk_present))
        grow("addr_lsh", lsh_signatures(addr, self._addr_positions, has_addr))
        grow("addr_code", _address_codes(addr, has_addr))
        grow("age", batch.age.astype(np.int16))
        grow("sex", batch.sex.astype(np.int8))
        grow("day", batch.extract_day.astype(np.int32))
        grow("dep", batch.dependent_flag.astype(np.bool_))
        grow("exp", batch.expectant_flag.astype(np.bool_))
        grow("birth", birth_years(batch.age, batch.extract_day))
        grow("birth_width", birth_width(batch.age))
        grow("alive", np.ones(k, dtype=np.bool_))
        self.row_pid.extend([None] * k)
        self._id_index = None
        self._n = n0 + k
        return np.arange(n0, self._n, dtype=np.int64)

    def _grow_column(self, column: str, more: npt.NDArray[Any]) -> None:
        """Append ``more`` to the column attribute ``column`` (see :func:`_grow`)."""
        setattr(self, column, _grow(getattr(self, column), more, self._room, column))

    # ------------------------------------------------------------------ helpers
    def _alive_rows_of(self, ids: I64) -> I64:
        """The alive row holding each record id; -1 where none does."""
        if self._id_index is None:
            rows = np.flatnonzero(self.alive)
            order = np.argsort(self.ids[rows], kind="stable")
            self._id_index = (self.ids[rows][order], rows[order])
        keys, rows = self._id_index
        out = np.full(ids.shape[0], -1, dtype=np.int64)
        if keys.size and ids.size:
            pos = np.minimum(np.searchsorted(keys, ids), keys.size - 1)
            hit = keys[pos] == ids
            out[hit] = rows[pos[hit]]
        return out

    def _features(self) -> Features:
        names = sorted(self.block_keys)
        keys = (
            np.stack([self.block_keys[k] for k in names], axis=1)
            if names
            else np.zeros((self._n, 0), dtype=np.uint64)
        )
        checked = np.asarray([name in EXACT_TYPES for name in self.exact_names], dtype=np.bool_)
        return Features(
            self.clk,
            self.exact,
            checked,
            self.sex,
            self.birth,
            self.birth_width,
            keys,
            self.addr,
            self.has_addr,
        )

    def _model(self) -> MatchModel:
        """The model in force, or the EM start while none has been estimated."""
        if self.model is not None:
            return self.model
        if self._prior is None:
            self._prior = prior_model(self._random_counts(self._features()))
        return self._prior

    def _random_counts(self, f: Features) -> npt.NDArray[np.float64]:
        """Pattern histogram of random pairs of live records (seeded: the same every run)."""
        rows = np.flatnonzero(self.alive)
        if rows.size < 2:
            return np.zeros(0)
        rng = np.random.default_rng(self.config.lsh_seed)
        k = min(self.config.random_pairs, rows.size * (rows.size - 1) // 2)
        a = rows[rng.integers(0, rows.size, k)]
        b = rows[rng.integers(0, rows.size, k)]
        keep = a != b
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        return pattern_counts(f, lo * max(self._n, 1) + hi, max(self._n, 1))

    def _estimation_due(self) -> bool:
        """Is the match model to be (re-)estimated at this update? (See EngineConfig.)"""
        if self.model is not None and not self.model.trained_on.get("estimated"):
            return False  # a model set by hand stays as it was set
        held = float(self.alive.sum())
        trained = self.model.trained_on.get("records", 0.0) if self.model is not None else 0.0
        return self.model is None or held >= self.config.retrain_growth * trained

    def _estimate(self, f: Features, counts: F64, delta: Delta) -> bool:
        """Estimate the match model from candidate pairs' pattern ``counts``; was one accepted?"""
        held = float(self.alive.sum())
        if counts.sum() < self.config.train_min_pairs:
            return False
        randoms = self._random_counts(f)
        model, report = estimate(
            counts,
            randoms,
            min_pairs=self.config.train_min_pairs,
        )
        delta.fit = report
        if model is not None:
            self.model = replace(model, trained_on={**model.trained_on, "records": held})
            delta.model = self.model
        return model is not None

    def _person_floor(self, model: MatchModel) -> float:
        """The match probability below which a cross pair forbids a merge.

        ``nonmatch_threshold`` bounds the *evidence*, not only the posterior: a pair
        is a clear non-match when it would score below the threshold at even prior
        odds, or below it at the model's prior, whichever is stricter. A posterior
        alone leans on the prior: where the candidates are mostly matches (a file of
        duplicates: 94% on FEBRL3) a 1% posterior let through pairs with ten bits of
        evidence against them, and one such pair chained two people of six records
        each (FEBRL3 precision 0.96 on one secret in ten, 0.98 on the worst with this).
        Where matches are the minority (a household population, 18%) the posterior
        bound is the stricter one and nothing changes.
        """
        t, lam = self.config.nonmatch_threshold, model.lam
        at_even_odds = t * lam / (t * lam + (1 - t) * (1 - lam))
        return max(t, at_even_odds)

    def _person_coheres(self, f: Features) -> Callable[[list[int], list[int]], bool]:
        model = self._model()
        scores_at_least = CohesionCheck(f, model, self._person_floor(model))
        cannot_between = self._cannot_between

        def coheres(ma: list[int], mb: list[int]) -> bool:
            return not cannot_between(ma, mb) and scores_at_least(ma, mb)

        return coheres

    def _cannot_between(self, ma: Sequence[int], mb: Sequence[int]) -> bool:
        """Whether a clerical non-match joins a row of ``ma`` and a row of ``mb``."""
        cannot = self._cannot
        if not cannot:
            return False
        ids = self.ids
        barred: set[int] = set()
        for r in ma:
            barred |= cannot.get(int(ids[r]), set())
        return bool(barred) and any(int(ids[r]) in barred for r in mb)

    def _decided_mask(self, i: I64, j: I64, match: bool | None = None) -> npt.NDArray[np.bool_]:
        """Which row pairs (i, j) are decided (``match`` None), or decided ``match``."""
        out = np.zeros(i.shape[0], dtype=np.bool_)
        if not self.decisions or not i.size:
            return out
        decided = {x for pair in self.decisions for x in pair}
        ia, ja = self.ids[i], self.ids[j]
        near = np.flatnonzero(
            np.isin(ia, np.fromiter(decided, np.int64, len(decided)))
            & np.isin(ja, np.fromiter(decided, np.int64, len(decided)))
        )
        for k in near.tolist():
            a, b = int(ia[k]), int(ja[k])
            got = self.decisions.get((a, b) if a < b else (b, a))
            out[k] = got is not None and (match is None or got == match)
        return out

    def _apply_decisions(self, f: Features) -> set[int]:
        """Split persons holding a newly cannot-linked pair, merge must-linked persons.

        Returns the rows whose person may have changed (to reconcile). A must-link
        that would put a cannot-linked pair in one person is not applied (the
        non-match wins; the pair stays apart).
        """
        touched: set[int] = set()
        find, members = self.persons.find, self.persons.members
        due = sorted(self._decisions_due)
        self._decisions_due = set()
        if not self.decisions:
            return touched
        pairs = np.asarray(sorted(self.decisions), dtype=np.int64).reshape(-1, 2)
        rows = self._alive_rows_of(pairs.reshape(-1)).reshape(-1, 2)
        at = {
            (int(a), int(b)): (int(ra), int(rb))
            for (a, b), (ra, rb) in zip(pairs.tolist(), rows.tolist(), strict=True)
            if ra >= 0 and rb >= 0
        }
        for key in due:
            if self.decisions.get(key) is not False or key not in at:
                continue
            ra, rb = at[key]
            root = find(ra)
            if root != find(rb):
                continue
            rest = self._detach(self.persons, root)
            self._recluster_persons([rest], f)
            touched.update(rest)
        for key, (ra, rb) in sorted(at.items()):
            if not self.decisions[key]:
                continue
            ca, cb = find(ra), find(rb)
            if ca == cb:
                continue
            ma, mb = members(ca), members(cb)
            if self._cannot_between(ma, mb):
                continue
            touched.update(ma)
            touched.update(mb)
            self.persons.union(ca, cb)
        return touched

    def _recluster_persons(self, groups: Sequence[Sequence[int]], f: Features) -> None:
        """Re-cluster each of ``groups`` (rows all alive, already detached) within itself."""
        self.persons.add_alone(np.fromiter(itertools.chain.from_iterable(groups), dtype=np.int64))
        i, j = pairs_within(groups)
        if not i.size:
            return
        s = score_pairs(f, i, j, self._model())
        m = (s.score >= self.config.match_threshold) & ~s.conflict
        m &= ~self._decided_mask(i, j, match=False)
        agglomerate(self.persons, i[m], j[m], s.score[m], self._person_coheres(f))

    def _detach(self, clusters: Clusters, root: int) -> list[int]:
        """Remove a cluster; returns its alive rows (dead rows are forgotten)."""
        rows = clusters.remove(root)
        return [r for r in rows if self.alive[r]]

    def _link_places(
        self, is_new: npt.NDArray[np.bool_], sent: Any = None
    ) -> tuple[set[int], int, float]:
        """Add new addressed rows to places and merge; returns (affected roots,
        candidates, seconds taken).

        ``sent``: on Dask, the features already on the workers (:meth:`DaskPairs.send`),
        whose address filters the places compare; None sends the address filters alone.
        """
        t0 = time.perf_counter()
        cfg = self.config
        new_rows = np.flatnonzero(is_new & self.has_addr & self.alive)
        self.places.add_alone(new_rows)
        live = self.alive & self.has_addr
        # a band's block is a whole street: order it by the next band, so that an
        # address with a typo sits beside the copies it still agrees with there
        bands = cfg.address_lsh_bands

        def specs() -> Iterator[BlockSpec]:
            for b in range(bands):
                yield BlockSpec(
                    np.ascontiguousarray(self.addr_lsh[:, b]),
                    np.ascontiguousarray(self.addr_lsh[:, (b + 1) % bands]),
                    cfg.address_window,
                )
            yield BlockSpec(self.addr_code, None, cfg.block_window)

        width = max(self._n, 1)
        # only edges at or above the threshold are kept, a slice of candidates at a time
        ei: list[I64] = []
        ej: list[I64] = []
        ed: list[npt.NDArray[np.float64]] = []
        if self.pairs is not None:
            held = self.pairs.candidates(specs(), is_new, live, width)
            n_codes = held.size
            # the update's features are on the workers already; else only the filters go
            on_workers = self.pairs.send(self.addr) if sent is None else sent
            i, j, d = self.pairs.dice_above(held, on_workers, cfg.address_threshold)
            del held
            ei, ej, ed = [i], [j], [d]
        else:
            codes = self._block_codes(specs(), is_new, live, first_band=0)
            n_codes = int(codes.size)
            for k in range(0, codes.size, _CHUNK):
                i, j = decode_pairs(codes[k : k + _CHUNK], width)
                d = kernel.dice_pairs(self.addr, self.addr, i, j)
                m = d >= cfg.address_threshold
                ei.append(i[m])
                ej.append(j[m])
                ed.append(d[m])
        if ei:
            agglomerate_by_dice(
                self.places,
                np.concatenate(ei),
                np.concatenate(ej),
                np.concatenate(ed),
                self.addr,
                cfg.address_nonmatch_threshold,
            )
        affected = set(distinct_rows(self.places.roots_of(new_rows), self._n).tolist())
        return affected, n_codes, time.perf_counter() - t0

    def _join_places_by_person(self, pids: Iterable[str]) -> set[int]:
        """Join places that one person's records show to be one address written two ways.

        A typo in the street, a blank postcode or a house name one agency keeps
        leave two copies of an address below ``address_threshold`` but above
        ``address_person_threshold``; when one person has records at both, they
        are one place (a move to another address scores far lower). Every pair of
        ``pids``' records is looked at (rebuilding from the database); an update
        looks only at the links it made (:meth:`_join_places_by_links`). Returns
        the places that grew.
        """
        # (a pair with a row in no place is dropped by _join_places)
        ok = (self.alive & self.has_addr).tolist()
        members, pid_root = self.persons.members, self.pid_root
        rows = [[r for r in members(pid_root[pid]) if ok[r]] for pid in pids]
        return self._join_places(*pairs_within(rows))

    def _join_places_by_links(self, i: I64, j: I64, address_dice: F64) -> set[int]:
        """:meth:`_join_places_by_person` for the record pairs this update linked."""
        cfg = self.config
        d = np.nan_to_num(address_dice, nan=0.0)
        near = (d >= cfg.address_person_threshold) & (d < cfg.address_threshold)
        find = self.persons.find
        keep = [
            k
            for k in np.flatnonzero(near).tolist()
            if find(int(i[k])) == find(int(j[k]))  # still one person after clustering
        ]
        return self._join_places(i[keep], j[keep])

    def _join_places(self, i: I64, j: I64) -> set[int]:
        """Join the places of record pairs (i, j) whose addresses agree to the person threshold."""
        if not i.size:
            return set()
        root = _padded(self.places.root_array(), self._n)  # -1: in no place
        ra, rb = root[i], root[j]
        other = (ra >= 0) & (rb >= 0) & (ra != rb)
        if not other.any():
            return set()
        i, j = i[other], j[other]
        cfg = self.config
        d = kernel.dice_pairs(self.addr, self.addr, i, j)
        m = d >= cfg.address_person_threshold
        agglomerate_by_dice(self.places, i[m], j[m], d[m], self.addr, cfg.address_person_threshold)
        return set(self.places.roots_of(i[m]).tolist())

    def candidate_pairs(self, is_new: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
        """Candidate person pairs (i < j, rows) with at least one row in ``is_new``."""
        return decode_pairs(self._candidate_codes(is_new), max(self._n, 1))

    def _candidate_codes(self, is_new: npt.NDArray[np.bool_]) -> I64:
        """:meth:`candidate_pairs` as sorted codes ``i * n + j`` (half the memory)."""
        cfg = self.config
        first_band = cfg.lsh_bands + len(self.block_keys) + self.exact.shape[1]
        return self._block_codes(self._person_blocks(), is_new, self.alive, first_band)

    def _block_codes(
        self,
        specs: Iterable[BlockSpec],
        is_new: npt.NDArray[np.bool_],
        mask: npt.NDArray[np.bool_],
        first_band: int,
    ) -> I64:
        """Sorted distinct pair codes of the blocking keys ``specs`` over the rows in ``mask``.

        The keys are worked through on :attr:`threads` threads; from ``first_band``
        on, the specs are the address bands, whose block orders the persons and
        places of one update share (:meth:`_band_order`).
        """

        def codes(spec: tuple[int, BlockSpec]) -> I64:
            b, s = spec
            order = self._band_order(b - first_band, s, mask) if b >= first_band else None
            return block_codes(s.key, is_new, s.window, mask, s.within, order)

        return unique_codes(threaded_map(codes, enumerate(specs), self.threads))

    def _band_order(
        self, band: int, spec: BlockSpec, mask: npt.NDArray[np.bool_]
    ) -> tuple[I64, U64] | None:
        """The block order of address band ``band``, sorted once per update.

        Persons and places block on the same address bands with the same rows
        (a band's key is 0 exactly where there is no address, so alive rows with a
        key are the alive addressed ones), so the sort is shared within an update;
        None (sort here) outside one, or for a band past the address bands.
        """
        cache = self._band_orders
        if cache is None or spec.within is None or band >= self.config.address_lsh_bands:
            return None
        got = cache.get(band)
        if got is None:
            got = cache[band] = block_order(spec.key, mask, spec.within)
        return got

    def _person_blocks(self) -> Iterator[BlockSpec]:
        """The blocking keys of person candidates, one :class:`BlockSpec` each.

        A generator: each key's contiguous copy is made only when its turn comes.
        """
        cfg = self.config
        keys = [self.lsh[:, b] for b in range(cfg.lsh_bands)]
        keys += list(self.block_keys.values())
        keys += [self.exact[:, t] for t in range(self.exact.shape[1])]
        for k in keys:
            yield BlockSpec(np.ascontiguousarray(k), None, cfg.block_window)
        # people at one address are candidates too: a typo in every name and a wrong
        # date of birth still leave the address (the model weighs how much it says).
        # A band's block is a street: ordered by the next band, an address's copies
        # sit together, so a household's worth of neighbours each side reach them
        bands = cfg.address_lsh_bands
        for b in range(min(bands, cfg.address_person_bands)):
            yield BlockSpec(
                np.ascontiguousarray(self.addr_lsh[:, b]),
                np.ascontiguousarray(self.addr_lsh[:, (b + 1) % bands]),
                cfg.address_person_window,
            )

    def _pairs_here(
        self,
        f: Features,
        is_new: npt.NDArray[np.bool_],
        n_old: int,
        delta: Delta,
        touched_pids: set[str],
        f_rows: set[int],
    ) -> tuple[I64, I64, PairScores, int, bool, float]:
        """Blocking, estimation when due, and scoring in this process.

        Returns the pairs at or above the review floor with their scores, the
        number of candidates, whether every person is re-linked, and when blocking ended.
        """
        cfg = self.config
        codes = self._candidate_codes(is_new)
        t2 = time.perf_counter()
        # 3. score and cluster; pairs below the review band are never looked at again
        relink = False
        patterns: npt.NDArray[np.int16] | None = None
        if self._estimation_due():
            # estimated from every candidate pair held, not only this update's; a
            # model estimated while few records were held (one agency's, say) may
            # have learnt the wrong thing, so when a new one is accepted every person
            # is re-linked under it (ids stay wherever most of a person's records do)
            held_before = n_old > 0 and bool(self.pid_root)
            every = self._candidate_codes(self.alive) if held_before else codes
            every_patterns = pattern_array(f, every, max(self._n, 1), threads=self.threads)
            accepted = self._estimate(f, pattern_histogram(every_patterns), delta)
            if not held_before:
                patterns = every_patterns  # the same candidates: compared once
            if accepted and held_before:
                relink, codes, patterns = True, every, every_patterns
                self._relink_all(touched_pids, f_rows)
            del every, every_patterns
        n_candidates = int(codes.size)
        floor = min(cfg.review_threshold, cfg.match_threshold)
        i, j, s = score_pairs_above(
            f, codes, max(self._n, 1), self._model(), floor, patterns=patterns, threads=self.threads
        )
        del codes, patterns
        return i, j, s, n_candidates, relink, t2

    def _pairs_on_dask(
        self,
        pairs: DaskPairs,
        f: Features,
        is_new: npt.NDArray[np.bool_],
        n_old: int,
        delta: Delta,
        touched_pids: set[str],
        f_rows: set[int],
    ) -> tuple[I64, I64, PairScores, int, bool, float, Any]:
        """:meth:`_pairs_here` as Dask tasks (:mod:`._distributed`); the same answer, and
        the features as sent to the workers (for the places)."""
        cfg, width = self.config, max(self._n, 1)
        held = pairs.candidates(self._person_blocks(), is_new, self.alive, width)
        t2 = time.perf_counter()
        sent = pairs.send(f)  # once for the estimation's counts and the scoring
        relink = False
        if self._estimation_due():
            held_before = n_old > 0 and bool(self.pid_root)
            every = (
                pairs.candidates(self._person_blocks(), self.alive, self.alive, width)
                if held_before
                else held
            )
            # the patterns counted stay with ``every``: scored from them if it is held
            accepted = self._estimate(f, pairs.pattern_counts(every, sent), delta)
            if accepted and held_before:
                relink, held = True, every
                self._relink_all(touched_pids, f_rows)
            del every
        floor = min(cfg.review_threshold, cfg.match_threshold)
        i, j, s = pairs.score_above(held, sent, self._model(), floor)
        return i, j, s, held.size, relink, t2, sent

    def _relink_all(self, touched_pids: set[str], f_rows: set[int]) -> None:
        """Forget every person: each live row alone, to be clustered again."""
        live = np.flatnonzero(self.alive)
        touched_pids.update(self.pid_root)
        self.persons = Clusters()
        self.persons.add_alone(live)
        f_rows.update(live.tolist())

    # ------------------------------------------------------------------ the update
    @gc_paused()
    def update(
        self,
        added: RecordBatch,
        removed: Sequence[int],
        previous: Mapping[int, str] | None = None,
        persons_ready: Callable[[Delta], None] | None = None,
    ) -> Delta:
        """Link ``added`` against everything held and retire ``removed`` (record ids).

        ``previous`` maps an added record id to the person its source record last
        belonged to (an agency's changed record is stored under a new id; a record
        that left an extract and came back, likewise): the person keeps that id
        unless the new content links elsewhere, so a refresh does not churn ids.
        An empty engine keeps the first batch's filter arrays rather than copying
        them, and marks them read-only. The cyclic garbage collector is paused
        meanwhile (:func:`protocols.gc_paused`).

        ``persons_ready``, if given, is called once with the delta as soon as its
        persons (``person_of``, the retired, merges, splits and the ids made or
        unheld), ``links`` and ``review`` are final, before the households are
        worked out (their fields, ``families`` and ``stats`` are not set yet): a
        caller can start storing those meanwhile.
        """
        cfg = self.config
        delta = Delta()
        t_start = time.perf_counter()
        added_ids = added.ids.astype(np.int64)
        if distinct(added_ids).size != added_ids.size:
            raise ValueError("the added batch holds a record id twice")
        # a record re-sent unchanged is a no-op; a changed one is replaced
        keep = np.ones(len(added), dtype=np.bool_)
        retire = distinct(np.asarray([int(x) for x in removed], dtype=np.int64))
        rows_in = self._alive_rows_of(added_ids)
        ks = np.flatnonzero((rows_in >= 0) & ~np.isin(added_ids, retire))
        replace = np.zeros(0, dtype=np.int64)
        if ks.size:
            same = _Probe(self, added, ks).same_as(rows_in[ks])
            keep[ks[same]] = False
            replace = added_ids[ks[~same]]
        if not keep.all():
            added = added.take(np.nonzero(keep)[0])
        removed_ids = np.union1d(retire, replace)
        rows_out = self._alive_rows_of(removed_ids)
        found = rows_out >= 0
        # a replaced record keeps its person unless the new content links elsewhere
        carried = {
            int(x): self.row_pid[r]
            for x, r in zip(removed_ids[found].tolist(), rows_out[found].tolist(), strict=True)
        }
        if previous:
            carried.update({int(k): v for k, v in previous.items()})
        removed_rows = sorted(rows_out[found].tolist())

        f_rows: set[int] = set()  # rows whose person must be reconciled
        touched_pids: set[str] = set()
        place_roots: set[int] = set()
        # rows of places that lost a row: re-clustered above by address alone, so the
        # joins their persons' records made (one address written two ways) are redone
        rejoin: set[int] = set()
        followers: set[str] = set()
        # 1. retire removed rows; re-cluster what remains of their persons and places
        if removed_rows:
            self.alive[np.asarray(removed_rows, dtype=np.int64)] = False
            self._id_index = None
            followers = self._living_at(removed_rows)
            f = self._features()
            # every person and place that lost a row is re-clustered at once: they are
            # disjoint, and agglomeration takes edges in one total order (score, rows),
            # so one pass over all their edges makes the same clusters as one pass
            # each (a numpy call or two a person was most of a refresh's link)
            rests: list[list[int]] = []
            for root in sorted({self.persons.find(r) for r in removed_rows}):
                pid = self.row_pid[root]
                if pid is not None:
                    touched_pids.add(pid)
                rests.append(self._detach(self.persons, root))
            self._recluster_persons(rests, f)
            for rest in rests:
                f_rows.update(rest)
            pl_roots = {self.places.find(r) for r in removed_rows if self.places.holds(r)}
            rests = [self._detach(self.places, root) for root in sorted(pl_roots)]
            left = np.fromiter(itertools.chain.from_iterable(rests), dtype=np.int64)
            self.places.add_alone(left)
            ai, aj = pairs_within(rests)
            if ai.size:
                dice = kernel.dice_pairs(self.addr, self.addr, ai, aj)
                near = dice >= cfg.address_threshold
                agglomerate_by_dice(
                    self.places,
                    ai[near],
                    aj[near],
                    dice[near],
                    self.addr,
                    cfg.address_nonmatch_threshold,
                )
            place_roots.update(self.places.roots_of(left).tolist())
            rejoin.update(left.tolist())
        # 2. append and block
        n_old = self._n
        self._births = n_old > 0  # the first load's ids all count as oldest
        new_rows = self._append(added)
        is_new = np.zeros(self._n, dtype=np.bool_)
        is_new[n_old:] = True
        self.persons.add_alone(new_rows)
        if carried:
            for r, x in zip(new_rows.tolist(), self.ids[new_rows].tolist(), strict=True):
                self.row_pid[r] = carried.get(x)
        f_rows.update(new_rows.tolist())
        t1 = time.perf_counter()
        self._band_orders = {}  # alive and the bands stand still from here to the places
        f = self._features()
        sent = None  # on Dask, the features on the workers, for the places too
        if self.pairs is not None:
            i, j, s, n_candidates, relink, t2, sent = self._pairs_on_dask(
                self.pairs, f, is_new, n_old, delta, touched_pids, f_rows
            )
        else:
            i, j, s, n_candidates, relink, t2 = self._pairs_here(
                f, is_new, n_old, delta, touched_pids, f_rows
            )
        t3 = time.perf_counter()
        # 3-5. places are clustered by address alone (all of them again after a
        # re-link: places that persons linked under the old model joined may not hold
        # under the new one) on a thread of their own, while persons are clustered and
        # named, and the evidence built, on this one: the places' loops let go of the
        # interpreter lock, so the two run on both cores. Neither reads what the other
        # writes.
        if relink:
            self.places = Clusters()
            self.chosen_row.clear()
        with ThreadPoolExecutor(1, thread_name_prefix="places") as pool:
            placing = pool.submit(self._link_places, self.alive.copy() if relink else is_new, sent)
            m, refused, link_now = self._cluster_persons(f, i, j, s, f_rows)
            t4 = time.perf_counter()
            changed_pids = self._name_persons(f_rows, touched_pids, n_old, delta)
            t5 = time.perf_counter()
            # 6. evidence for links and review (persons are final; places are not read),
            # while the places' thread may still run
            interesting = m | refused | (s.score >= cfg.review_threshold)
            same = np.zeros(i.size, dtype=np.bool_)
            find = self.persons.find
            sel = np.nonzero(interesting)[0]
            same[sel] = [
                find(a) == find(b) for a, b in zip(i[sel].tolist(), j[sel].tolist(), strict=True)
            ]
            link_mask = m & same
            # a decided pair has left the review queue for good
            review_mask = ((s.score >= cfg.review_threshold) | refused) & ~same
            review_mask &= ~self._decided_mask(i, j)
            delta.links = self._evidence(s, i, j, link_mask)
            delta.review = self._evidence(s, i, j, review_mask)
            t6 = time.perf_counter()
            if persons_ready is not None:
                persons_ready(delta)
            t6b = time.perf_counter()
        new_place_roots, addr_candidates, seconds_places = placing.result()
        del sent
        place_roots = {self.places.find(r) for r in place_roots if self.places.holds(r)}
        place_roots |= new_place_roots
        pending = (changed_pids | followers | self._unplaced) & self.pid_root.keys()
        place_roots |= self._join_places_by_links(
            i[link_now], j[link_now], s.address_dice[link_now]
        )
        if rejoin and not relink:
            place_roots |= self._join_places_by_person(
                {p for r in rejoin if self.alive[r] and (p := self.row_pid[r]) is not None}
                & self.pid_root.keys()
            )
        self._unplaced = set()
        self._update_households(pending, set(delta.persons_retired), place_roots, delta)
        t7 = time.perf_counter()
        n_alive = int(self.alive.sum())
        n_new = int(new_rows.size)
        possible = n_new * (n_alive - n_new) + n_new * (n_new - 1) // 2
        delta.stats = {
            "records_added": float(n_new),
            "records_removed": float(len(removed_rows)),
            "records_held": float(n_alive),
            "candidate_pairs": float(n_candidates),
            "comparisons": float(n_candidates),
            "pairs_above_review": float(i.size),
            "reduction_ratio": 1.0 - n_candidates / possible if possible else 1.0,
            "match_edges": float(m.sum()),
            "refused_edges": float(refused.sum()),
            "address_candidate_pairs": float(addr_candidates),
            "persons": float(len(self.pid_root)),
            "households": float(len(self.hid_persons)),
            "seconds_prepare": t1 - t_start,
            "seconds_blocking": t2 - t1,
            "seconds_scoring": t3 - t2,
            "seconds_clustering": t4 - t3,
            "seconds_ids": t5 - t4,
            "seconds_evidence": t6 - t5,
            "seconds_places": seconds_places,
            "seconds_persons_ready": t6b - t6,
            "seconds_households": t7 - t6b,
            "seconds_total": t7 - t_start,
            "model_estimated": float(delta.model is not None),
            "relinked_all": float(relink),
        }
        self._band_orders = None
        return delta

    def _cluster_persons(
        self, f: Features, i: I64, j: I64, s: PairScores, f_rows: set[int]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Clerical decisions, then the pairs at or above the match threshold, into
        persons; returns (match edges, refused edges, edges linked now)."""
        cfg = self.config
        # clerical decisions first: must-links are the strongest edges there are
        f_rows.update(r for r in self._apply_decisions(f) if self.alive[r])
        strong = s.score >= cfg.match_threshold
        m = strong & ~s.conflict  # a conflicting exact token is never a link
        m &= ~self._decided_mask(i, j, match=False)  # nor is a clerical non-match
        refused = strong & s.conflict
        refused[m] = agglomerate(self.persons, i[m], j[m], s.score[m], self._person_coheres(f))
        return m, refused, m & ~refused

    def _name_persons(
        self, f_rows: set[int], touched_pids: set[str], n_old: int, delta: Delta
    ) -> set[str]:
        """Give the persons holding ``f_rows`` their ids (:func:`reconcile`); records
        the changes in ``delta`` and returns the ids given."""
        rows_in = np.fromiter(f_rows, dtype=np.int64, count=len(f_rows))
        root_of = self.persons.root_array()
        roots = distinct_rows(root_of[rows_in], root_of.size)
        # every row of those persons, person by person (by root), each in row order
        rows = np.flatnonzero(np.isin(root_of, roots, kind="table"))
        rows = rows[np.argsort(root_of[rows], kind="stable")]
        flat = rows.tolist()
        groups = _runs(root_of[rows], flat)
        groups_roots = roots.tolist()
        # (the groups' members' own ids are old ids to reconcile already: touched
        # adds those of persons who lost rows to removals and re-clustering)
        ids, retired, merges, splits = reconcile(
            groups,
            self.row_pid.__getitem__,
            lambda k: self._make_ids("per_", k, delta.persons_made),
            touched_pids,
            self._born,
        )
        pid_root = self.pid_root
        delta.persons_unheld = {pid for pid in ids if pid not in pid_root}
        for pid in retired:
            pid_root.pop(pid, None)
        pid_root.update(zip(ids, groups_roots, strict=True))
        # each row's id, where it changed (or the row is new), all rows at once
        row_pid = self.row_pid
        given = list(itertools.chain.from_iterable(map(itertools.repeat, ids, map(len, groups))))
        had = np.fromiter(map(row_pid.__getitem__, flat), dtype=object, count=len(flat))
        now = np.fromiter(given, dtype=object, count=len(given))
        change = np.flatnonzero((had != now) | (rows >= n_old)).tolist()
        for k in change:
            row_pid[flat[k]] = given[k]
        record_ids = self.ids[rows].tolist()
        delta.person_of.update((record_ids[k], given[k]) for k in change)
        delta.persons_retired, delta.merges, delta.splits = retired, merges, splits
        return set(ids)

    def _evidence(self, s: PairScores, i: I64, j: I64, mask: npt.NDArray[np.bool_]) -> Evidence:
        idx = np.nonzero(mask)[0]
        weights = 1 << np.arange(len(self.exact_names), dtype=np.int64)
        return Evidence(
            self._model(),
            self.exact_names,
            self.ids[i[idx]],
            self.ids[j[idx]],
            s.score[idx],
            s.pattern[idx],
            s.dice[idx],
            s.agree[idx] @ weights,
            s.disagree[idx] @ weights,
            s.sex_disagree[idx],
            np.round(s.age_gap[idx], 2),
            s.keys_agreed[idx],
            s.keys_differing[idx],
            np.round(s.address_dice[idx], 4),
            decisions=self.decisions,
        )

    def _living_at(self, rows: Sequence[int]) -> set[str]:
        """The persons whose chosen row is one of ``rows`` (who lived at a retired row's place)."""
        chosen = self.chosen_row
        at = np.fromiter(chosen.values(), dtype=np.int64, count=len(chosen))
        hit = np.flatnonzero(np.isin(at, np.asarray(rows, dtype=np.int64))).tolist()
        if not hit:
            return set()
        who = list(chosen)
        return {who[k] for k in hit}

    def _follow(self, pid: str, view: _PlaceView | None = None) -> int | None:
        """The row standing for the place a person lives at.

        Their own current address, unless their records there look like stale copies
        from before a household move: everyone else seen at that place either now
        lives at one other place (the movers: two people at least, since one person
        moving out is not a household move) or, like this person, was seen nowhere
        else; and nobody was seen at the old place more recently than the movers at
        the new one. ``view`` carries what is read about places between calls while
        places, base rows and liveness stand still (one household update).
        """
        row = self.base_row.get(pid)
        if row is None:
            return None
        v = view if view is not None else _PlaceView(self)
        root_of = v.roots
        here = root_of[row]
        if not v.has_mover(here):
            return row  # everyone seen here lives here (most places): nobody to follow
        others: set[str] = set()
        last_here = -(2**31)
        for q, day in v.people(here):
            if q == pid:
                last_here = max(last_here, day)
            else:
                others.add(q)
        movers: list[str] = []
        there: set[int] = set()
        for q in sorted(others):
            b = self.base_row.get(q)
            if b is None:
                return row
            place = root_of[b]
            if place != here:
                movers.append(q)
                there.add(place)
            elif v.places_of(q) - {here}:
                return row  # someone seen elsewhere too still counts this place as home
        if len(there) != 1:
            return row
        target = there.pop()
        if len(movers) >= 2 and v.last_day(target) >= last_here:
            return target
        return row

    def _update_households(
        self, changed_pids: set[str], retired_pids: set[str], place_roots: set[int], delta: Delta
    ) -> None:
        """Re-home the persons ``changed_pids`` and whoever may follow them, and give the
        households they make their ids (:func:`reconcile`), recording the changes in
        ``delta``.

        Persons are numbered for the pass (:attr:`_PlaceView.pids`) and worked on as
        arrays of those numbers; only persons whose chosen row changes are written
        back one by one, and only those at places someone moved away from are
        followed (:meth:`_follow`) one by one.
        """
        view = _PlaceView(self)
        chosen = self.chosen_row
        for pid in retired_pids:
            chosen.pop(pid, None)
            self.base_row.pop(pid, None)
        place = view.place
        pids = view.pids
        sel = view.affected(changed_pids, place_roots)
        sel_pids = [pids[k] for k in sel.tolist()]
        bases = view.current_row_array(view.person_roots[sel])
        self.base_row.update(
            zip(sel_pids, [None if b < 0 else b for b in bases.tolist()], strict=True)
        )
        # a person living where nobody has moved away from stays there (_follow's
        # first answer), found for every place at once; the others are followed
        rows = bases.copy()
        addressed = np.flatnonzero(bases >= 0)
        for k in addressed[view.have_movers(place[bases[addressed]])].tolist():
            got = self._follow(sel_pids[k], view)
            rows[k] = -1 if got is None else got
        was = np.fromiter(
            map(chosen.get, sel_pids, itertools.repeat(-1)), dtype=np.int64, count=len(sel_pids)
        )
        moved = np.flatnonzero(was != rows)
        for k in moved[rows[moved] < 0].tolist():
            del chosen[sel_pids[k]]
        there = moved[rows[moved] >= 0]
        chosen.update(zip([sel_pids[k] for k in there.tolist()], rows[there].tolist(), strict=True))
        homes = [place[rows[rows >= 0]]]
        solo = [sel_pids[k] for k in np.flatnonzero(rows < 0).tolist()]
        # everyone who shared a household with an affected person is affected too
        # (affected persons are all held: none of them is retired)
        old_hids: set[str] = set()
        if self.person_hid:
            # (a household id is never empty)
            old_hids = set(
                filter(None, map(self.person_hid.get, itertools.chain(sel_pids, retired_pids)))
            )
        if old_hids:
            extra: set[str] = set()
            for h in old_hids:
                extra |= self.hid_persons.get(h, set())
            extra -= retired_pids
            extra.difference_update(sel_pids)
            ordered = list(extra)
            at = np.fromiter(
                map(chosen.get, ordered, itertools.repeat(-1)), dtype=np.int64, count=len(ordered)
            )
            homes.append(place[at[at >= 0]])
            solo.extend(ordered[k] for k in np.flatnonzero(at < 0).tolist())
        # a household is everyone whose chosen row is at one of these places (by place,
        # then by id), then each person living nowhere alone
        groups = view.residents_of(np.concatenate(homes))
        groups.extend([p] for p in sorted(solo))
        touched = old_hids
        ids, retired, merges, splits = reconcile(
            groups,
            self.person_hid.get,
            lambda k: self._make_ids("hh_", k, delta.households_made),
            touched,
            self._born,
        )
        delta.household_merges.extend(merges)
        delta.household_splits.extend(splits)
        delta.households_unheld = {h for h in ids if h not in self.hid_persons}
        for pid in retired_pids:
            gone = self.person_hid.pop(pid, None)
            if gone is not None and gone in self.hid_persons:
                self.hid_persons[gone].discard(pid)
        for h in retired:
            self.hid_persons.pop(h, None)
        delta.households_retired = retired
        changed: list[tuple[str, list[str]]] = []
        person_hid, hid_persons, household_of = (
            self.person_hid,
            self.hid_persons,
            delta.household_of,
        )
        for members, hid in zip(groups, ids, strict=True):
            before = hid_persons.get(hid, set())
            if len(before) == len(members) and before.issuperset(members):
                continue  # the same household as before: its members all hold its id
            now = set(members)
            for pid in members:
                old = person_hid.get(pid)
                if old != hid:
                    if old is not None and old in hid_persons:
                        hid_persons[old].discard(pid)
                    person_hid[pid] = hid
                    household_of[pid] = hid
            hid_persons[hid] = now
            if now != before:
                changed.append((hid, members))
        delta.families.update(view.families(changed))

    def _make_ids(self, prefix: str, k: int, made: set[str]) -> list[str]:
        """``k`` new ids, added to ``made`` (and to the births, in order, after the first load)."""
        factory = self._id_factory
        new = random_ids(prefix, k) if factory is None else [factory(prefix) for _ in range(k)]
        made.update(new)
        if self._births:
            born = len(self._born) + 1
            self._born.update(zip(new, range(born, born + k), strict=True))
        return new


def _runs(keys: I64, items: Sequence[_V]) -> list[list[_V]]:
    """``items`` cut where ``keys`` (sorted, one per item) change: a list each run of
    equal keys, in order."""
    if not keys.size:
        return []
    cuts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True]).tolist()
    return [list(items[a:b]) for a, b in itertools.pairwise(cuts)]


def _padded(roots: I64, n: int) -> I64:
    """``roots`` extended with -1 to ``n`` rows (rows after the last one a clustering holds)."""
    if roots.size >= n:
        return roots[:n]
    return np.concatenate([roots, np.full(n - roots.size, -1, dtype=np.int64)])


class _PlaceView:
    """What a household update reads about places and persons, read once.

    Valid while places, persons, base rows and liveness stand still: within one
    pass of :meth:`LinkageEngine._update_households` (or one :meth:`_follow`).
    Liveness and extract days are read as Python lists once, not element by element.
    """

    def __init__(self, engine: LinkageEngine) -> None:
        self._e = engine
        self.alive: list[bool] = engine.alive.tolist()
        self._day: list[int] | None = None
        self._people: dict[int, list[tuple[str, int]]] = {}
        self._last: dict[int, int] = {}
        self._places: dict[str, set[int]] = {}
        self._rows: dict[str, list[int]] = {}
        self._mover: dict[int, bool] = {}

    @property
    def day(self) -> list[int]:
        if self._day is None:
            self._day = self._e.day.tolist()
        return self._day

    @functools.cached_property
    def place(self) -> I64:
        """The place root of every row (-1: no place), as an array."""
        return _padded(self._e.places.root_array(), self._e._n)

    @functools.cached_property
    def roots(self) -> list[int]:
        """The place root of every row (-1: no place)."""
        out: list[int] = self.place.tolist()
        return out

    @functools.cached_property
    def _person(self) -> I64:
        """The person root of every row (-1: no person)."""
        return _padded(self._e.persons.root_array(), self._e._n)

    @functools.cached_property
    def _alive(self) -> npt.NDArray[np.bool_]:
        return self._e.alive.copy()

    def current_row(self, pid: str) -> int | None:
        """The row of a person's current address (see :func:`._households.current_row`)."""
        members = self._e.places.members
        return current_row(self.rows_of(pid), self.roots, self._e.day, lambda r: len(members(r)))

    def current_rows(self, pids: Iterable[str]) -> dict[str, int | None]:
        """:meth:`current_row` of each of ``pids``, all at once (:func:`current_rows`)."""
        pids = list(pids)
        if not pids:
            return {}
        roots = np.fromiter(
            map(self._e.pid_root.__getitem__, pids), dtype=np.int64, count=len(pids)
        )
        best = self.current_row_array(roots).tolist()
        return {pid: None if b < 0 else b for pid, b in zip(pids, best, strict=True)}

    def current_row_array(self, roots: I64) -> I64:
        """The current row of the persons rooted at ``roots`` (-1: no address), at once."""
        if not roots.size:
            return np.zeros(0, dtype=np.int64)
        e = self._e
        inv, rows, who, m = self._numbered(roots)
        place = self.place[rows]
        sizes = np.bincount(self.place[self.place >= 0], minlength=e._n)
        best = current_rows(who, rows, place, e.day[rows], sizes[np.maximum(place, 0)], m)
        out: I64 = np.append(best, np.int64(-1))[inv]
        return out

    def _numbered(self, roots: I64) -> tuple[I64, I64, I64, int]:
        """The distinct persons rooted at ``roots`` numbered 0 to ``m - 1`` in root order,
        and their alive rows: ``(number of each root, rows, number of each row, m)``.

        Rows are sorted and unique; a root -1 (no person) numbers -1 and has no rows.
        Tables over row numbers, not sorts or searches.
        """
        n = self._e._n
        slot = np.zeros(n + 1, dtype=np.int64)  # root -> its number + 1; -1 reads slot n
        slot[roots] = 1
        slot[n] = 0
        held = np.flatnonzero(slot)
        slot[held] = np.arange(1, held.size + 1, dtype=np.int64)
        of_row = slot[self._person]  # (a row with no person reads slot n: 0)
        rows = np.flatnonzero(self._alive & (of_row > 0))
        return slot[roots] - 1, rows, of_row[rows] - 1, held.size

    @functools.cached_property
    def pids(self) -> list[str]:
        """Every person held, in ``pid_root``'s order: person number k is ``pids[k]``."""
        return list(self._e.pid_root)

    @functools.cached_property
    def person_roots(self) -> I64:
        """The root row of each person number."""
        roots = self._e.pid_root.values()
        return np.fromiter(roots, dtype=np.int64, count=len(roots))

    @functools.cached_property
    def number(self) -> I64:
        """The person number of every row, then a last slot: -1 for a dead row, a row
        no person holds, and the last slot (so that ``number[-1]`` reads -1)."""
        n = self._e._n
        of_root = np.full(n + 1, -1, dtype=np.int64)
        of_root[self.person_roots] = np.arange(self.person_roots.size, dtype=np.int64)
        out = of_root[self._person]  # the person root -1 (no person) reads the last slot
        out[~self._alive] = -1
        return np.append(out, np.int64(-1))

    def _numbers_at(self, places: I64) -> I64:
        """The person numbers of the alive rows at ``places`` (with repeats)."""
        if not places.size:
            return np.zeros(0, dtype=np.int64)
        got = self.number[:-1][np.isin(self.place, places, kind="table")]
        return got[got >= 0]

    def affected(self, changed_pids: set[str], place_roots: set[int]) -> I64:
        """The person numbers whose household may change (sorted).

        ``changed_pids`` (those held) and the persons alive at ``place_roots``; then
        whoever shares a place with one of them may follow (or stop following) them:
        everyone alive at the places of their records. Every person when every person
        is changed (a link from scratch, a re-link).
        """
        e = self._e
        n_persons = len(self.pids)
        if len(changed_pids) >= n_persons and e.pid_root.keys() <= changed_pids:
            return np.arange(n_persons, dtype=np.int64)  # (a set comparison: no look-ups)
        roots = np.fromiter(
            map(e.pid_root.get, changed_pids, itertools.repeat(-1)),
            dtype=np.int64,
            count=len(changed_pids),
        )
        roots = roots[roots >= 0]
        mark = np.zeros(n_persons + 1, dtype=np.bool_)  # the last slot: no person
        mark[self.number[roots]] = True
        mark[self._numbers_at(np.fromiter(place_roots, dtype=np.int64))] = True
        mark[-1] = False  # (number[roots] of a dead root reads -1)
        # the places of the marked persons' alive records, and everyone alive there
        theirs = mark[self.number[:-1]] & (self.place >= 0)
        mark[self._numbers_at(self.place[theirs])] = True
        return np.flatnonzero(mark[:-1])

    def have_movers(self, places: I64) -> npt.NDArray[np.bool_]:
        """:meth:`has_mover` of each of ``places``, all at once (base rows as they stand)."""
        if not places.size:
            return np.zeros(0, dtype=np.bool_)
        e = self._e
        at = np.flatnonzero(self._alive & np.isin(self.place, places, kind="table"))
        who = self.number[at]
        seen = np.zeros(len(self.pids) + 1, dtype=np.bool_)
        seen[who] = True
        held = np.flatnonzero(seen[:-1])
        # None (no base row) reads as NaN, then -1
        base_of = cast("Callable[[str], int | None]", e.base_row.get)
        got = np.fromiter(
            map(base_of, map(self.pids.__getitem__, held.tolist())),
            dtype=np.float64,
            count=held.size,
        )
        base = np.full(len(self.pids) + 1, -1, dtype=np.int64)
        base[held] = np.where(np.isnan(got), -1, got).astype(np.int64)
        based = base[who]
        here = self.place[at]
        moved = (based >= 0) & (self.place[np.maximum(based, 0)] != here)
        with_mover = distinct(here[moved])
        for root in with_mover.tolist():
            self._mover[root] = True
        return np.isin(places, with_mover)

    def residents_of(self, places: I64) -> list[list[str]]:
        """The persons whose chosen row is at each of ``places`` with someone living
        there: one list a place, in place order, each sorted."""
        chosen = self._e.chosen_row
        who = list(chosen)
        rows = np.fromiter(chosen.values(), dtype=np.int64, count=len(who))
        wanted = np.zeros(self._e._n + 1, dtype=np.bool_)
        wanted[places] = True
        wanted[-1] = False
        at = self.place[rows]
        keep = np.flatnonzero(wanted[at])
        at = at[keep]
        order = np.argsort(at, kind="stable")
        members = [who[k] for k in keep[order].tolist()]
        return [sorted(run) for run in _runs(at[order], members)]

    def families(self, households: Sequence[tuple[str, Sequence[str]]]) -> dict[str, bool]:
        """Whether each ``(household, its persons)`` is a family, all at once.

        A family holds a person for whom :func:`._households.is_dependent_or_expectant`
        holds (:func:`._households.dependents_or_expectants` for every person here).
        """
        if not households:
            return {}
        e = self._e
        pids = [p for _, members in households for p in members]
        # -1, no rows: a person not held (there is none in a household)
        roots = np.fromiter(
            map(e.pid_root.get, pids, itertools.repeat(-1)), dtype=np.int64, count=len(pids)
        )
        inv, rows, who, m = self._numbered(roots)
        flag = np.append(
            dependents_or_expectants(who, e.age[rows], e.day[rows], e.dep[rows], e.exp[rows], m),
            False,
        )[inv]
        # any member's flag, household by household (their members lie one after another)
        sizes = np.fromiter(
            map(len, map(operator.itemgetter(1), households)), dtype=np.int64, count=len(households)
        )
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        nonempty = sizes > 0
        family = np.zeros(len(households), dtype=np.bool_)
        family[nonempty] = np.logical_or.reduceat(flag, starts[nonempty]) if flag.size else False
        return {hid: f for (hid, _), f in zip(households, family.tolist(), strict=True)}

    def rows_of(self, pid: str) -> list[int]:
        """A person's alive rows."""
        got = self._rows.get(pid)
        if got is None:
            e, alive = self._e, self.alive
            got = self._rows[pid] = [r for r in e.persons.members(e.pid_root[pid]) if alive[r]]
        return got

    def people(self, root: int) -> list[tuple[str, int]]:
        """(person, extract day) of each alive row with a person at the place ``root``."""
        got = self._people.get(root)
        if got is None:
            e, alive, day = self._e, self.alive, self.day
            got = self._people[root] = [
                (q, day[x])
                for x in e.places.members(root)
                if (q := e.row_pid[x]) is not None and alive[x]
            ]
        return got

    def last_day(self, root: int) -> int:
        """The latest extract day of any row at the place ``root``, alive or not."""
        got = self._last.get(root)
        if got is None:
            day = self.day
            got = self._last[root] = max(day[x] for x in self._e.places.members(root))
        return got

    def has_mover(self, root: int) -> bool:
        """Whether someone seen at the place ``root`` has a current address elsewhere.

        When nobody has, :meth:`LinkageEngine._follow` stays at ``root`` for anyone
        living there, whatever else it would weigh.
        """
        got = self._mover.get(root)
        if got is None:
            e, alive, root_of = self._e, self.alive, self.roots
            base, row_pid = e.base_row, e.row_pid
            got = False
            # the place's rows read directly, not through people(): most places have
            # no mover, and their (person, day) list would be built for nothing
            for x in e.places.members(root):
                if alive[x] and (q := row_pid[x]) is not None:
                    b = base.get(q)
                    if b is not None and root_of[b] != root:
                        got = True
                        break
            self._mover[root] = got
        return got

    def places_of(self, pid: str) -> set[int]:
        """The places of a person's alive rows."""
        got = self._places.get(pid)
        if got is None:
            root_of = self.roots
            got = self._places[pid] = {root_of[r] for r in self.rows_of(pid)} - {-1}
        return got


class _Probe:
    """Compares rows of an incoming batch with held rows (is a re-sent record unchanged?)."""

    def __init__(self, engine: LinkageEngine, batch: RecordBatch, ks: I64) -> None:
        self.e, self.b, self.ks = engine, batch, ks

    def same_as(self, rows: I64) -> npt.NDArray[np.bool_]:
        e, b, ks = self.e, self.b, self.ks
        same: npt.NDArray[np.bool_] = (e.clk[rows] == b.clk[ks]).all(axis=1)
        same &= (e.addr[rows] == b.address_clk[ks]).all(axis=1)
        same &= e.has_addr[rows] == b.has_address[ks]
        same &= e.age[rows] == b.age[ks]
        same &= e.sex[rows] == b.sex[ks]
        same &= e.day[rows] == b.extract_day[ks]
        same &= e.dep[rows] == b.dependent_flag[ks]
        same &= e.exp[rows] == b.expectant_flag[ks]
        for t, name in enumerate(e.exact_names):
            col = b.exact.get(name)
            same &= e.exact[rows, t] == (col[ks] if col is not None else 0)
        for name in b.exact.keys() - set(e.exact_names):
            same &= b.exact[name][ks] == 0
        for name, held in e.block_keys.items():
            col = b.blocking.get(name)
            same &= held[rows] == (col[ks] if col is not None else 0)
        return same
