"""Helpers for the matching-engine tests: hand-made records and a shared encoded population."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from evaluation._harness import Population, load_population
from linkage_service._batch import RecordBatch, token_codes
from linkage_service._engine import Delta, LinkageEngine
from linkage_service._matchmodel import ADDRESS_CUTS, PERSON_LEVELS, MatchModel

HOUSEHOLDS = 2000
SEED = 20261121
DAY = 20_000


def filt(bits: Sequence[int] | set[int]) -> np.ndarray:
    """A 1024-bit filter (16 uint64 words) with the given bits set."""
    words = np.zeros(16, dtype=np.uint64)
    for b in bits:
        words[b // 64] |= np.uint64(1) << np.uint64(b % 64)
    return words


def base_bits(seed: int, n: int = 500) -> set[int]:
    """A random set of ``n`` bit positions."""
    return set(np.random.default_rng(seed).choice(1024, size=n, replace=False).tolist())


def perturb(bits: set[int], k: int, seed: int) -> set[int]:
    """``bits`` with ``k`` removed and ``k`` other positions added (Dice 1 - k/len)."""
    rng = np.random.default_rng(seed)
    members = sorted(bits)
    drop = set(rng.choice(members, size=k, replace=False).tolist())
    outside = sorted(set(range(1024)) - bits)
    add = set(rng.choice(outside, size=k, replace=False).tolist())
    return (bits - drop) | add


@dataclass
class Rec:
    """One hand-made record."""

    id: int
    clk: set[int]
    addr: set[int] | None = None
    agency: int = 0
    age: int = 40
    sex: int = 1
    day: int = DAY
    exact: dict[str, bytes] = field(default_factory=dict)
    block: dict[str, bytes] = field(default_factory=dict)
    dependent: bool = False
    expectant: bool = False


def batch(recs: Sequence[Rec]) -> RecordBatch:
    """A RecordBatch of hand-made records."""
    n = len(recs)
    clk = np.stack([filt(r.clk) for r in recs]) if n else np.zeros((0, 16), np.uint64)
    addr = np.stack([filt(r.addr or ()) for r in recs]) if n else np.zeros((0, 16), np.uint64)
    types = ("nhs_number", "ni_number", "upn")
    return RecordBatch(
        ids=np.array([r.id for r in recs], dtype=np.int64),
        agency=np.array([r.agency for r in recs], dtype=np.int16),
        clk=clk,
        address_clk=addr,
        has_address=np.array([r.addr is not None for r in recs], dtype=np.bool_),
        age=np.array([r.age for r in recs], dtype=np.int16),
        sex=np.array([r.sex for r in recs], dtype=np.int8),
        district=np.full(n, "", dtype="U4"),
        extract_day=np.array([r.day for r in recs], dtype=np.int32),
        dependent_flag=np.array([r.dependent for r in recs], dtype=np.bool_),
        expectant_flag=np.array([r.expectant for r in recs], dtype=np.bool_),
        exact={t: token_codes([r.exact.get(t) for r in recs]) for t in types},
        blocking={
            k: token_codes([r.block.get(k) for r in recs])
            for k in sorted({k for r in recs for k in r.block})
        },
    )


def counter_ids() -> object:
    """A deterministic id factory: per_0000000000000001, hh_0000000000000001, ..."""
    count = itertools.count(1)

    def make(prefix: str) -> str:
        return f"{prefix}{next(count):016x}"

    return make


def engine() -> LinkageEngine:
    return LinkageEngine(id_factory=counter_ids(), model=dice_model())  # type: ignore[arg-type]


def persons(eng: LinkageEngine, ids: Sequence[int]) -> list[str]:
    """The person of each record id (via the read helpers)."""
    of = {}
    for pid in list(eng.pid_root):
        for rid in eng.person_records(pid):
            of[rid] = pid
    return [of[i] for i in ids]


def labels(delta: Delta, batch_: RecordBatch) -> tuple[list[str], list[str]]:
    """Person and household label per row of ``batch_`` from a from-scratch delta."""
    person = [delta.person_of[int(i)] for i in batch_.ids]
    return person, [delta.household_of[p] for p in person]


def load_relink_remove(pop: Population) -> list[tuple[RecordBatch, list[int]]]:
    """Three updates of ``pop``: (added, removed) for a first load (agencies 0-2), a
    second load (the rest; it re-estimates the model and re-links everyone) and
    the removal of agency 1's records."""
    first = np.nonzero(pop.batch.agency < 3)[0]
    rest = np.nonzero(pop.batch.agency >= 3)[0]
    gone = [int(i) for i in pop.batch.ids[pop.batch.agency == 1]]
    empty = pop.batch.take(np.zeros(0, dtype=np.int64))
    return [(pop.batch.take(first), []), (pop.batch.take(rest), []), (empty, gone)]


@functools.cache
def _population(workdir: str) -> Population:
    return load_population(HOUSEHOLDS, SEED, Path(workdir))


@pytest.fixture(scope="session")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    """The shared synthetic population (generated and encoded once per test session)."""
    return _population(str(tmp_path_factory.getbasetemp() / "engine-population"))


def dice_model(
    match: float = 0.8, review: float = 0.7, address_same: float = 0.9, prior: float = 0.0
) -> MatchModel:
    """A hand-set match model for engine mechanics: the person filter's Dice decides.

    Pairs at or above ``match`` score about 0.999, pairs in ``[review, match)`` about
    0.2 (the review band), lower pairs about 0.001 (below the cohesion floor).
    Addresses, sex and birth year weigh a little, checked identifiers a lot.
    Only whole Dice bands of the model can be thresholds. ``prior`` is the prior
    weight in bits (0: even odds; log2(19): 95% of candidates are matches).
    """
    person = [
        (10.0 if lo >= match else -2.0 if lo >= review else -10.0)
        + {"close": 0.5, "far": -8.0, "missing": 0.0}[birth]
        for lo, _agree, _differ, birth in PERSON_LEVELS
    ]
    address = [0.0] + [0.5 if lo >= address_same else -1.0 for lo in [0.0, *ADDRESS_CUTS]]
    return MatchModel.from_weights([person, address, [0, 12, -12], [0, 4, -4], [0, 0.2, -2]], prior)
