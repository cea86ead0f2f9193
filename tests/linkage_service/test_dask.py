"""The engine on a 2-worker Dask LocalCluster links exactly as the in-process engine does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from evaluation._harness import Population, ingest_population, load_population
from linkage_service import _export as export_
from linkage_service._api import open_dask
from linkage_service._config import Settings
from linkage_service._distributed import DaskPairs, _block_task, _bounds, _cut
from linkage_service._engine import Delta, LinkageEngine
from linkage_service._service import configured_engine_factory
from protocols import ExportPerson

from ._engine_helpers import counter_ids, load_relink_remove, population

__all__ = ["population"]  # the fixture, imported for pytest

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_pairs() -> Iterator[DaskPairs]:
    # real worker processes, as on several machines: features and codes are
    # pickled across, so nothing can be shared by accident. Seven row ranges (not
    # a multiple of the workers) so that ranges are uneven and some nearly empty;
    # key columns blocked in hash shares of 3,000 rows (several shares per key).
    with DaskPairs.connect(
        workers=2, threads_per_worker=1, partitions=7, rows_per_block_task=3000
    ) as pairs:
        yield pairs


def _same(a: Delta, b: Delta) -> None:
    assert a.person_of == b.person_of
    assert a.household_of == b.household_of
    assert a.families == b.families
    assert (a.merges, a.splits, a.persons_retired) == (b.merges, b.splits, b.persons_retired)
    assert (a.household_merges, a.household_splits, a.households_retired) == (
        b.household_merges,
        b.household_splits,
        b.households_retired,
    )
    assert list(a.links) == list(b.links)
    assert list(a.review) == list(b.review)
    for key in ("candidate_pairs", "pairs_above_review", "match_edges", "address_candidate_pairs"):
        assert a.stats[key] == b.stats[key], key
    assert (a.model is None) == (b.model is None)
    if a.model is not None and b.model is not None:
        assert a.model.fingerprint() == b.model.fingerprint()


def test_dask_links_identically_to_one_process(
    population: Population, dask_pairs: DaskPairs
) -> None:
    here = LinkageEngine(id_factory=counter_ids())  # type: ignore[arg-type]
    there = LinkageEngine(id_factory=counter_ids(), pairs=dask_pairs)  # type: ignore[arg-type]
    # a first load (the model estimated), a second that re-estimates and re-links
    # everyone, and a removal
    steps = load_relink_remove(population)
    for added, removed in steps:
        a = here.update(added, removed)
        b = there.update(added, removed)
        _same(a, b)
    assert a.stats["records_removed"] == len(steps[-1][1])
    assert here.pid_root.keys() == there.pid_root.keys()
    assert here.person_hid == there.person_hid


def test_the_second_load_re_links_under_a_new_model(population: Population) -> None:
    # the comparison above covers the re-link path only if it is taken
    pop = population
    eng = LinkageEngine()
    eng.update(pop.batch.take(np.nonzero(pop.batch.agency < 3)[0]), [])
    d = eng.update(pop.batch.take(np.nonzero(pop.batch.agency >= 3)[0]), [])
    assert d.stats["relinked_all"] == 1.0


def test_from_state_on_dask_places_as_in_process(
    population: Population, dask_pairs: DaskPairs
) -> None:
    pop = population
    d = LinkageEngine(id_factory=counter_ids()).update(pop.batch, [])  # type: ignore[arg-type]
    here = LinkageEngine.from_state(pop.batch, d.person_of, d.household_of)
    there = LinkageEngine.from_state(pop.batch, d.person_of, d.household_of, pairs=dask_pairs)
    assert sorted(map(sorted, here.places.clusters())) == sorted(
        map(sorted, there.places.clusters())
    )


def _grouping(db: Engine) -> tuple[set[frozenset[str]], set[frozenset[frozenset[str]]]]:
    """Persons as sets of record refs, households as sets of persons (ids are random)."""
    persons: dict[str, frozenset[str]] = {}
    household: dict[str, list[frozenset[str]]] = {}
    for chunk in export_.stream(db, "persons", "ndjson"):
        for line in chunk.splitlines():
            row = ExportPerson.model_validate_json(line)
            # record ids are drawn at random per database; agency and ref are the record
            refs = frozenset(f"{r.agency_id}/{r.record_ref}" for r in row.records)
            persons[row.person_id] = refs
            household.setdefault(row.household_id or row.person_id, []).append(refs)
    return set(persons.values()), {frozenset(h) for h in household.values()}


def test_the_service_on_dask_stores_what_it_stores_in_process(
    tmp_path: Path, dask_pairs: DaskPairs
) -> None:
    pop = load_population(120, seed=5, workdir=tmp_path / "pop")
    here = ingest_population(pop, f"sqlite:///{tmp_path / 'here.db'}")
    there = ingest_population(
        pop, f"sqlite:///{tmp_path / 'there.db'}", configured_engine_factory(dask_pairs)
    )
    try:
        assert _grouping(here) == _grouping(there)
        assert len(_grouping(here)[0]) > 100
    finally:
        here.dispose()
        there.dispose()


def test_settings_open_a_local_cluster(tmp_path: Path) -> None:
    settings = Settings(token_file=tmp_path / "tokens", dask_scheduler="local", dask_workers=1)
    with open_dask(settings) as pairs:
        assert len(pairs.client.nthreads()) == 1
        assert pairs.partitions() == 2


def test_hash_shares_of_a_key_make_exactly_its_pairs() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    key = rng.integers(1, 400, n).astype(np.uint64)
    key[rng.random(n) < 0.1] = 0  # no key
    within = rng.integers(0, 2**60, n).astype(np.uint64)
    is_new = rng.random(n) < 0.5
    alive = rng.random(n) < 0.95
    whole = _block_task(key, within, 6, is_new, alive, n, 3)
    shares = [_block_task(key, within, 6, is_new, alive, n, 3, h, 5) for h in range(5)]
    assert all(s.size for s in whole)
    assert np.unique(np.concatenate(whole)).size == sum(w.size for w in whole)  # each once
    bounds = _bounds(n, 3)
    for p in range(3):
        # row range p is codes bounds[p] <= c < bounds[p + 1]
        assert ((whole[p] >= bounds[p]) & (whole[p] < bounds[p + 1])).all()
        got = np.concatenate([s[p] for s in shares])
        assert np.array_equal(np.sort(got), np.sort(whole[p]))  # each pair in one share only
    assert sum(s[p].size for s in shares for p in range(3)) == sum(w.size for w in whole)
    assert min(sum(s[p].size for p in range(3)) for s in shares) > 0


def test_scoring_from_the_kept_patterns_equals_scoring_afresh(
    population: Population, dask_pairs: DaskPairs
) -> None:
    # the estimation's patterns stay on the workers with their candidates and the
    # scoring filters by them; a candidate set never counted is compared afresh
    eng = LinkageEngine(pairs=dask_pairs)
    eng.update(population.batch, [])
    f, n = eng._features(), eng._n
    sent = dask_pairs.send(f)
    counted = dask_pairs.candidates(eng._person_blocks(), eng.alive, eng.alive, n)
    fresh = dask_pairs.candidates(eng._person_blocks(), eng.alive, eng.alive, n)
    counts = dask_pairs.pattern_counts(counted, sent)
    assert counted.patterns is not None and fresh.patterns is None
    assert counts.sum() == counted.size > 0
    model, floor = eng._model(), 0.05
    kept = dask_pairs.score_above(counted, sent, model, floor)
    afresh = dask_pairs.score_above(fresh, sent, model, floor)
    assert kept[0].size > 0
    assert np.array_equal(kept[0], afresh[0]) and np.array_equal(kept[1], afresh[1])
    assert np.array_equal(kept[2].score, afresh[2].score)


@pytest.mark.parametrize("ranges", [1, 3, 40])
def test_cut_files_each_code_under_its_row_range(ranges: int) -> None:
    # fewer than 16 ranges by masks, more by a stable sort of the range numbers
    n = 1000
    codes = np.random.default_rng(ranges).integers(0, n * n, 20_000)
    bounds = _bounds(n, ranges)
    parts = _cut(codes, bounds[1:-1])
    assert len(parts) == ranges
    for p, part in enumerate(parts):
        assert ((part >= bounds[p]) & (part < bounds[p + 1])).all()
        assert np.array_equal(part, codes[(codes >= bounds[p]) & (codes < bounds[p + 1])])
