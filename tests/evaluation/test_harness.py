"""The evaluation harness: pair counting known answers and population loading."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation._harness import completeness, load_population, pair_scores


def test_pair_scores_known_answers():
    # truth: {0,1,2} {3,4}; predicted: {0,1} {2,3,4}
    # true pairs 3+1=4; predicted 1+3=4; correct: (0,1) and (3,4) = 2
    s = pair_scores(["a", "a", "b", "b", "b"], ["x", "x", "x", "y", "y"])
    assert (s.true_pairs, s.predicted_pairs, s.correct_pairs) == (4, 4, 2)
    assert s.precision == s.recall == s.f1 == 0.5


def test_pair_scores_edges():
    assert pair_scores(["a"], ["x"]).f1 == 1.0  # no pairs at all: nothing wrong
    with pytest.raises(ValueError):
        pair_scores(["a"], ["x", "y"])


def test_completeness_counts_true_pairs_found():
    truth = ["p", "p", "p", "q"]
    a = np.array([0, 1, 2], dtype=np.int64)
    b = np.array([1, 2, 3], dtype=np.int64)
    assert completeness(a, b, truth) == pytest.approx(2 / 3)


def test_population_loads_with_truth_row_for_row():
    pop = load_population(120, seed=3)
    n = len(pop.batch)
    assert n == len(pop.truth_person) == len(pop.truth_household) > 100
    assert pop.batch.clk.shape == (n, 16)
    assert len(set(pop.batch.ids.tolist())) == n
    # every record's person belongs to exactly one household
    household_of = {}
    for person, household in zip(pop.truth_person, pop.truth_household, strict=True):
        assert household_of.setdefault(person, household) == household


def test_population_without_truth_has_the_same_records(tmp_path):
    with_truth = load_population(120, seed=3, workdir=tmp_path)
    without = load_population(120, seed=3, workdir=tmp_path, truth=False)  # the cache, reused
    assert without.truth_person == without.truth_household == [] and not without.truth_by_ref
    assert len(with_truth.truth_by_ref) == len(with_truth.batch) == len(without.batch)
    for column in ("ids", "clk", "address_clk", "age", "sex", "extract_day"):
        assert (getattr(with_truth.batch, column) == getattr(without.batch, column)).all()
