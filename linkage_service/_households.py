"""Households and families from address encodings.

Owns how persons are grouped into households. Records' address filters are
clustered into *places* (the same address across agencies despite typos):
candidates come from LSH bands over the address filter plus the exact filter,
edges are address-filter Dice at or above the address threshold, and places are
built with the same constrained agglomeration as persons (every cross pair must
stay above the address non-match threshold), so neighbours on one street are not
chained into one place. A person lives at the place of their *current* address:
their records' places are ranked by the most recent extract date, then by how
many of the person's records say so, then by how many records the place has
(the household's other members confirm it), then by the smallest row. A
household is the set of persons living at one place; a person with no address
is a household alone. A household is a family when it holds a dependent child
(aged 0-15, or 16-18 in education or training) or an expectant parent.

Must never: look at anything but encodings and coarse attributes, log values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


def current_row(
    rows: Sequence[int],
    place_of: Sequence[int],
    extract_day: npt.NDArray[np.int32],
    place_size: Callable[[int], int],
) -> int | None:
    """The row holding the person's current address among ``rows`` (None if no address).

    ``place_of`` gives every row's place root (-1: no address); ``place_size`` gives
    a place's number of records.
    """
    addressed = [r for r in rows if place_of[r] >= 0]
    if not addressed:
        return None
    here = place_of[addressed[0]]
    if all(place_of[r] == here for r in addressed):
        return min(addressed)  # one place (most people): its first row, as ranked below
    votes: dict[int, int] = {}
    latest: dict[int, int] = {}
    first: dict[int, int] = {}
    for r in addressed:
        pl = place_of[r]
        votes[pl] = votes.get(pl, 0) + 1
        d = int(extract_day[r])
        if d > latest.get(pl, -(2**31)):
            latest[pl] = d
        if r < first.get(pl, 2**62):
            first[pl] = r
    size = {pl: place_size(pl) for pl in votes}

    def rank(pl: int) -> tuple[int, bool, int, int, int]:
        return (latest[pl], size[pl] > votes[pl], votes[pl], size[pl], -first[pl])

    best = max(votes, key=rank)
    return first[best]


def current_rows(
    person: I64,
    rows: I64,
    place_of: I64,
    extract_day: npt.NDArray[np.integer],
    place_size: I64,
    persons: int,
) -> I64:
    """:func:`current_row` of ``persons`` persons at once (-1 where a person has no address).

    Row ``rows[k]`` belongs to person ``person[k]`` (0 to ``persons - 1``), is at the
    place ``place_of[k]`` (-1: no address), which holds ``place_size[k]`` records,
    and was extracted on day ``extract_day[k]``. The same ranking as
    :func:`current_row`, by sorting: a person's places are grouped and the best
    ranked taken, for every person in a few array steps.
    """
    out = np.full(persons, -1, dtype=np.int64)
    keep = place_of >= 0
    if not keep.any():
        return out
    p, r, pl = person[keep], rows[keep], place_of[keep]
    d, sz = extract_day[keep].astype(np.int64), place_size[keep]
    # grouped by (person, place) with one key (rows of a group may come in any order:
    # only the group's count, latest day and first row are read)
    order = np.argsort(p * (int(pl.max()) + 1) + pl)
    p, r, pl, d, sz = p[order], r[order], pl[order], d[order], sz[order]
    start = np.flatnonzero(np.r_[True, (p[1:] != p[:-1]) | (pl[1:] != pl[:-1])])
    votes = np.diff(np.r_[start, p.size])
    latest = np.maximum.reduceat(d, start)
    first = np.minimum.reduceat(r, start)
    size, owner = sz[start], p[start]
    # a person with one place (most people) lives there; the others at the highest
    # (latest, size > votes, votes, size, -first) of their places: the first rows of
    # two places differ, so there are no ties
    alone = np.r_[True, owner[1:] != owner[:-1]] & np.r_[owner[1:] != owner[:-1], True]
    out[owner[alone]] = first[alone]
    several = np.flatnonzero(~alone)
    if several.size:
        first, size, votes = first[several], size[several], votes[several]
        latest, owner = latest[several], owner[several]
        best = np.lexsort((-first, size, votes, size > votes, latest, owner))
        last = best[np.r_[owner[best][1:] != owner[best][:-1], True]]
        out[owner[last]] = first[last]
    return out


def is_dependent_or_expectant(
    rows: Sequence[int],
    age: Sequence[int],
    extract_day: Sequence[int],
    dependent_flag: Sequence[bool],
    expectant_flag: Sequence[bool],
) -> bool:
    """Whether a person (their records' rows) makes a household a family.

    Age is read from the person's most recent records; the flags from any record.
    The columns are read a row at a time: Python lists are fastest (numpy arrays
    give the same answer, slowly).
    """
    if not rows:
        return False
    if any(expectant_flag[r] for r in rows):
        return True
    last = max(extract_day[r] for r in rows)
    in_education = any(dependent_flag[r] for r in rows)
    for r in rows:
        if extract_day[r] == last:
            a = age[r]
            if 0 <= a <= 15 or (16 <= a <= 18 and in_education):
                return True
    return False


def dependents_or_expectants(
    person: I64,
    age: npt.NDArray[np.integer],
    extract_day: npt.NDArray[np.integer],
    dependent_flag: npt.NDArray[np.bool_],
    expectant_flag: npt.NDArray[np.bool_],
    persons: int,
) -> npt.NDArray[np.bool_]:
    """:func:`is_dependent_or_expectant` of ``persons`` persons at once.

    Row ``k`` of the columns belongs to person ``person[k]`` (0 to ``persons - 1``).
    """
    expectant = np.bincount(person, weights=expectant_flag, minlength=persons) > 0
    in_education = np.bincount(person, weights=dependent_flag, minlength=persons) > 0
    last = np.full(persons, np.iinfo(np.int64).min, dtype=np.int64)
    day = extract_day.astype(np.int64)
    np.maximum.at(last, person, day)
    a = age.astype(np.int64)
    child = (a >= 0) & (a <= 15) | (a >= 16) & (a <= 18) & in_education[person]
    latest_child = np.bincount(person, weights=child & (day == last[person]), minlength=persons)
    out: npt.NDArray[np.bool_] = expectant | (latest_child > 0)
    return out
