"""Extract order carries no household signal; the rank correlation that measures it is right."""

from __future__ import annotations

import math
import random

import pytest

from evaluation import measure_council, measure_synthetic, order_signal, spearman


def _slow_spearman(x, y):
    """Reference: Pearson's r of mean ranks, in plain Python."""

    def ranks(v):
        ordered = sorted(v)
        return [
            sum(i for i, w in enumerate(ordered) if w == value) / ordered.count(value)
            for value in v
        ]

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / den


def test_spearman_known_answer():
    # Wikipedia, "Spearman's rank correlation coefficient", worked example (IQ and
    # hours of television per week): rho = -29/165.
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    assert spearman(iq, tv) == pytest.approx(-29 / 165, abs=1e-12)


def test_spearman_matches_the_slow_reference_with_ties():
    rng = random.Random(5)
    for n in (2, 3, 10, 57):
        x = [rng.randrange(6) for _ in range(n)]  # many ties, as household indexes have
        y = [rng.random() for _ in range(n)]
        if len(set(x)) > 1:
            assert spearman(x, y) == pytest.approx(_slow_spearman(x, y), abs=1e-12)


def test_spearman_edges():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [7, 7, 7]) == 0.0
    with pytest.raises(ValueError, match="x has 2 values, y has 3"):
        spearman([1, 2], [1, 2, 3])
    assert order_signal([0, 0, 1, 1, 2, 2]).rho == pytest.approx(
        spearman(range(6), [0, 0, 1, 1, 2, 2])
    )


def test_csv_order_leaks_and_extract_order_does_not(tmp_path):
    """Small population, a bound that cannot flake: |rho| < 5 / sqrt(n) in every extract.

    Under a random order rho has standard deviation about 1 / sqrt(n - 1); the
    generator's CSVs (rows shuffled only within buffers of 4,096) keep household
    order in the big files, which the same measure sees (test power).
    """
    found = measure_synthetic(4000, tmp_path / "synthetic", seed=7)
    assert len(found) == 7
    assert max(e.rows.rho for e in found) > 0.5, found  # the CSV order does leak
    for e in found:
        assert e.lines.records == e.rows.records > 500, e
        assert abs(e.lines.rho) < 5 / math.sqrt(e.lines.records), e


def test_council_extract_order_says_nothing_of_households(tmp_path):
    found = measure_council(2000, tmp_path / "council", seed=3)
    assert len(found) == 7
    for e in found:
        assert e.lines.records > 300, e
        assert abs(e.lines.rho) < 5 / math.sqrt(e.lines.records), e


# The target, at sizes where it is stable: the smallest extracts (early
# help; the council's children's social care) hold over 8,000 records, so rho's
# standard deviation is under 0.0112 and 0.05 is more than 4.4 of them (a chance
# failure about once in 10^5 runs per extract). The populations are seeded; the
# shuffles never are. Two workers: the parallel encode path, at scale.


@pytest.mark.slow
def test_line_order_correlates_under_005_with_households_in_every_synthetic_extract(tmp_path):
    found = measure_synthetic(40_000, tmp_path / "synthetic", seed=20261121, workers=2)
    assert len(found) == 7
    assert min(e.rows.rho for e in found) > 0.7, found  # before: every CSV's order leaks
    for e in found:
        assert e.lines.records > 8_000, e
        assert abs(e.lines.rho) < 0.05, e


@pytest.mark.slow
def test_line_order_correlates_under_005_with_households_in_every_council_extract(tmp_path):
    found = measure_council(45_000, tmp_path / "council", seed=20261203, workers=2)
    assert len(found) == 7
    for e in found:
        assert e.lines.records > 8_000, e
        assert abs(e.lines.rho) < 0.05, e
