"""Id reconciliation: the uncontested shortcut gives what the plain greedy ordering gives."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from linkage_service._engine import reconcile


def greedy(
    groups: Sequence[Sequence[int]],
    prev: Callable[[int], str | None],
    new_id: Callable[[], str],
    touched: set[str],
    age: Mapping[str, int],
) -> tuple[list[str], list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """The rule as stated, by selection: take the best claim left until none is left."""
    members = [collections.Counter(p for p in map(prev, g) if p is not None) for g in groups]
    claims = {(gi, old): n for gi, c in enumerate(members) for old, n in c.items()}
    ids: dict[int, str] = {}
    held = [sum(c.values()) for c in members]
    while claims:
        gi, old = min(
            claims,
            key=lambda k: (-claims[k], age.get(k[1], 0), k[1], held[k[0]] - claims[k], k[0]),
        )
        ids[gi] = old
        claims = {k: n for k, n in claims.items() if k[0] != gi and k[1] != old}
    final = [ids[gi] if gi in ids else new_id() for gi in range(len(groups))]
    kept = set(ids.values())
    splits = [
        (old, final[gi])
        for gi, c in enumerate(members)
        for old in sorted(c)
        if old in kept and old != final[gi]
    ]
    olds = touched | {old for c in members for old in c}
    retired = sorted(olds - kept)
    # each retired id merged into the group holding most of its members (ties: larger id)
    merges = []
    for old in retired:
        holders = [(c[old], final[gi]) for gi, c in enumerate(members) if old in c]
        if holders:
            merges.append((old, max(holders)[1]))
    return final, retired, merges, splits


def in_batches(new_id: Callable[[], str]) -> Callable[[int], list[str]]:
    """``new_id`` as reconcile asks for new ids: ``k`` at once."""
    return lambda k: [new_id() for _ in range(k)]


OLD = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "e", "f"]))


@settings(max_examples=400, deadline=None)
@given(
    previous=st.lists(OLD, min_size=0, max_size=14),
    cuts=st.lists(st.integers(0, 14), max_size=6),
    ages=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 3)),
    touched=st.sets(st.sampled_from("abcdefg")),
)
def test_reconcile_is_the_greedy_rule(
    previous: list[str | None], cuts: list[int], ages: dict[str, int], touched: set[str]
) -> None:
    bounds = sorted({0, len(previous), *(min(c, len(previous)) for c in cuts)})
    groups = [list(range(lo, hi)) for lo, hi in itertools.pairwise(bounds)]

    def one() -> Callable[[], str]:
        made = itertools.count(1)
        return lambda: f"new{next(made)}"

    got = reconcile(groups, previous.__getitem__, in_batches(one()), set(touched), ages)
    assert got == greedy(groups, previous.__getitem__, one(), set(touched), ages)


def test_a_split_and_a_merge() -> None:
    # x's members went two ways; y and z came together
    groups = [[0, 1, 2], [3], [4, 5, 6]]
    prev = ["x", "x", None, "x", "y", "z", "z"]
    made = iter(["n1", "n2"])
    ids, retired, merges, splits = reconcile(
        groups, prev.__getitem__, in_batches(made.__next__), {"w"}, {"y": 1, "z": 2}
    )
    assert ids == ["x", "n1", "z"]
    assert retired == ["w", "y"]
    assert merges == [("y", "z")]
    assert splits == [("x", "n1")]


def test_when_a_family_parts_its_id_stays_with_those_among_their_own() -> None:
    # x was {0, 1}, y was {2}; 1 is grouped with y's member for a while, 0 alone
    groups = [[1, 2], [0]]
    prev = ["x", "x", "y"]
    new_ids = in_batches(iter(["n1"]).__next__)
    ids, retired, merges, splits = reconcile(
        groups, prev.__getitem__, new_ids, set(), {"x": 1, "y": 2}
    )
    # both ids live on: nobody's id went to a stranger, nothing was retired
    assert ids == ["y", "x"] and retired == [] and merges == []
    assert splits == [("x", "y")]
    # when 1 comes home, nobody changes id
    ids, retired, _, splits = reconcile(
        [[2], [0, 1]], ["x", "y", "y"].__getitem__, new_ids, set(), {"x": 1, "y": 2}
    )
    assert ids == ["y", "x"] and retired == [] and splits == [("y", "x")]
