"""Id reconciliation: the uncontested shortcut gives what the plain greedy ordering gives."""

from __future__ import annotations

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
    """The rule as stated: every (members, old id, group) in one greedy order."""
    counts: list[dict[str, int]] = []
    for g in groups:
        c: dict[str, int] = {}
        for p in map(prev, g):
            if p is not None:
                c[p] = c.get(p, 0) + 1
        counts.append(c)
    triples = sorted(
        ((n, old, gi) for gi, c in enumerate(counts) for old, n in c.items()),
        key=lambda t: (-t[0], age.get(t[1], 0), t[1], t[2]),
    )
    ids: list[str | None] = [None] * len(groups)
    kept: set[str] = set()
    for _, old, gi in triples:
        if ids[gi] is None and old not in kept:
            ids[gi] = old
            kept.add(old)
    splits: list[tuple[str, str]] = []
    final: list[str] = []
    for gi, assigned in enumerate(ids):
        if assigned is None:
            assigned = new_id()
        for old in sorted(counts[gi]):
            if old in kept and old != assigned:
                splits.append((old, assigned))
        final.append(assigned)
    retired = sorted((touched | {old for c in counts for old in c}) - kept)
    best: dict[str, tuple[int, str]] = {}
    for gi, c in enumerate(counts):
        for old, n in c.items():
            if old not in kept and (n, final[gi]) > best.get(old, (0, "")):
                best[old] = (n, final[gi])
    merges = [(old, best[old][1]) for old in retired if old in best]
    return final, retired, merges, splits


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

    def run(fn: Callable[..., object]) -> object:
        made = itertools.count(1)
        return fn(groups, previous.__getitem__, lambda: f"new{next(made)}", set(touched), ages)

    assert run(reconcile) == run(greedy)


def test_a_split_and_a_merge() -> None:
    # x's members went two ways; y and z came together
    groups = [[0, 1, 2], [3], [4, 5, 6]]
    prev = ["x", "x", None, "x", "y", "z", "z"]
    made = iter(["n1", "n2"])
    ids, retired, merges, splits = reconcile(
        groups, prev.__getitem__, lambda: next(made), {"w"}, {"y": 1, "z": 2}
    )
    assert ids == ["x", "n1", "z"]
    assert retired == ["w", "y"]
    assert merges == [("y", "z")]
    assert splits == [("x", "n1")]
