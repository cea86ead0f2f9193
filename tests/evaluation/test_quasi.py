"""k-anonymity of clear attributes: counted in distinct persons, per record and per person."""

from __future__ import annotations

import pytest

from evaluation._quasi import k_anonymity, per_person, person_values


def test_records_of_one_person_count_once() -> None:
    values = [(7, "F", "LS6"), (7, "F", "LS6"), (7, "F", "LS6"), (30, "M", None)]
    owners = ["a", "a", "b", "c"]
    k = k_anonymity(values, owners)
    # the three LS6 records belong to two persons: k = 2 each; the last is unique
    assert k.n == 4 and k.classes == 2 and k.min_k == 1
    assert k.unique == pytest.approx(0.25) and k.below_5 == pytest.approx(1.0)


def test_a_person_takes_the_most_common_known_value_per_attribute() -> None:
    values = [(7, None, "LS6"), (7, "F", None), (8, "F", "LS6")]
    assert person_values(values, ["a", "a", "a"]) == {"a": (7, "F", "LS6")}


def test_per_person_k() -> None:
    values = [(7, "F", "LS6"), (7, "F", "LS6"), (9, "M", "LS6")]
    k = per_person(values, ["a", "b", "c"])
    assert (k.n, k.unique, k.min_k, k.median_k) == (3, pytest.approx(1 / 3), 1, 2.0)


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="2 combinations but 1 owners"):
        k_anonymity([(1,), (2,)], ["a"])
