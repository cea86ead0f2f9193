"""How identifying are the attributes the linkage service holds in clear?

The linkage service holds, besides encodings it cannot read, a few coarse
attributes in clear on each record (protocols.TokenisedRecord: age or age band,
sex, postcode district). Someone holding the service's database and outside
knowledge of a person (their age, sex and area) can single them out when no one
else shares those values. This module measures that as k-anonymity: the number
of people sharing a combination of values.

* per record: a record's ``k`` is the number of distinct persons whose records
  carry exactly its combination;
* per person: a person's combination is, per attribute, the value most of their
  records carry (ignoring records without one), as the service shows a person;
  ``k`` is the number of persons with the same combination.

For tests and benchmarks only; it reads synthetic truth (which records are one
person) and, to show what extract v1 used to send, the sealed identities.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["KAnonymity", "k_anonymity", "per_person", "person_values", "summarise"]

Values = tuple[Hashable, ...]


@dataclass(frozen=True)
class KAnonymity:
    """The distribution of ``k`` over a set of records or persons."""

    n: int
    unique: float  # share with k = 1
    below_5: float  # share with k < 5
    min_k: int
    median_k: float
    classes: int  # distinct combinations


def _summary(ks: Sequence[int], classes: int) -> KAnonymity:
    n = len(ks)
    if n == 0:
        return KAnonymity(0, 0.0, 0.0, 0, 0.0, 0)
    return KAnonymity(
        n,
        sum(1 for k in ks if k == 1) / n,
        sum(1 for k in ks if k < 5) / n,
        min(ks),
        float(statistics.median(ks)),
        classes,
    )


def k_anonymity(values: Sequence[Values], owners: Sequence[Hashable]) -> KAnonymity:
    """k over items: ``values[i]`` is item i's combination, ``owners[i]`` its person.

    ``k`` of an item is the number of distinct owners among the items with the
    same combination (records of one person count once). Pass one item per
    person for the per-person figure.
    """
    if len(values) != len(owners):
        raise ValueError(f"{len(values)} combinations but {len(owners)} owners")
    people: dict[Values, set[Hashable]] = {}
    for v, o in zip(values, owners, strict=True):
        people.setdefault(v, set()).add(o)
    size = {v: len(p) for v, p in people.items()}
    return _summary([size[v] for v in values], len(size))


def person_values(values: Sequence[Values], owners: Sequence[Hashable]) -> dict[Hashable, Values]:
    """Each person's combination: per attribute the most common known value of their records.

    Ties go to the value seen first; an attribute no record of the person has is None.
    """
    by_owner: dict[Hashable, list[Values]] = {}
    for v, o in zip(values, owners, strict=True):
        by_owner.setdefault(o, []).append(v)
    out: dict[Hashable, Values] = {}
    for owner, rows in by_owner.items():
        combo: list[Hashable] = []
        for column in zip(*rows, strict=True):
            known = Counter(x for x in column if x is not None)
            combo.append(known.most_common(1)[0][0] if known else None)
        out[owner] = tuple(combo)
    return out


def per_person(values: Sequence[Values], owners: Sequence[Hashable]) -> KAnonymity:
    """k over persons (see :func:`person_values`)."""
    combos = person_values(values, owners)
    return k_anonymity(list(combos.values()), list(combos))


def summarise(
    values: Sequence[Values], owners: Sequence[Hashable]
) -> tuple[KAnonymity, KAnonymity]:
    """(per record, per person)."""
    return k_anonymity(values, owners), per_person(values, owners)
