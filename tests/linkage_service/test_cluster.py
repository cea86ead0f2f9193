"""Persons from hand-made filters: no chaining, duplicates, token conflicts, review band."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage_service import _kernel_ref
from linkage_service._cluster import (
    Clusters,
    _edges,
    _in_row_order,
    agglomerate,
    agglomerate_by_dice,
    agglomerate_reference,
    pairs_within,
)
from linkage_service._engine import EngineConfig, Evidence, LinkageEngine
from linkage_service._matchmodel import SIZES, prior_model
from linkage_service._service import _dumps_fast

from ._engine_helpers import (
    Rec,
    base_bits,
    batch,
    counter_ids,
    dice_model,
    engine,
    persons,
    perturb,
)


def test_no_chaining_through_a_bridge_record() -> None:
    # A~B and B~C have Dice 0.85 (a match), A vs C only 0.7 (the review band, about
    # 0.2): with a non-match floor of 0.5 the bridge B joins one side and A and C
    # stay apart
    b = base_bits(1, 400)
    rng = np.random.default_rng(2)
    members = sorted(b)
    drop_a = set(members[:60])
    drop_c = set(members[60:120])
    outside = sorted(set(range(1024)) - b)
    add = rng.permutation(outside)
    a = (b - drop_a) | set(add[:60].tolist())
    c = (b - drop_c) | set(add[60:120].tolist())
    cfg = EngineConfig(nonmatch_threshold=0.5)
    eng = LinkageEngine(cfg, id_factory=counter_ids(), model=dice_model())  # type: ignore[arg-type]
    delta = eng.update(batch([Rec(1, a, agency=0), Rec(2, b, agency=1), Rec(3, c, agency=2)]), [])
    p = persons(eng, [1, 2, 3])
    assert p[0] != p[2]
    assert p[1] in (p[0], p[2])
    # the refused edge is put up for review, not decided
    assert any({x, y} in ({1, 3}, {2, 3}, {1, 2}) for x, y, _, _ in delta.review)


@pytest.mark.parametrize("prior", [0.0, math.log2(19)])
def test_the_prior_never_carries_a_clear_non_match_into_a_person(prior: float) -> None:
    # A~B and B~C match, A vs C is a clear non-match by its own evidence (about -10
    # bits). At even odds it scores 0.001; where 95% of candidates are matches (a
    # file of duplicates) the prior lifts it to 0.018, above the 1% floor, and A, B
    # and C used to become one person. The floor is judged at even odds there.
    b = base_bits(1, 400)
    rng = np.random.default_rng(2)
    members = sorted(b)
    outside = rng.permutation(sorted(set(range(1024)) - b))
    a = (b - set(members[:75])) | set(outside[:75].tolist())  # Dice 0.81 to b
    c = (b - set(members[75:150])) | set(outside[75:150].tolist())  # 0.81 to b, 0.63 to a
    eng = LinkageEngine(id_factory=counter_ids(), model=dice_model(prior=prior))  # type: ignore[arg-type]
    eng.update(batch([Rec(1, a, agency=0), Rec(2, b, agency=1), Rec(3, c, agency=2)]), [])
    p = persons(eng, [1, 2, 3])
    assert p[0] != p[2] and p[1] in (p[0], p[2])
    floor = eng._person_floor(eng._model())
    assert floor == pytest.approx(0.01 if prior == 0 else 0.01 * 19 / (0.01 * 19 + 0.99))


def test_duplicates_inside_one_agency_merge() -> None:
    b = base_bits(3)
    eng = engine()
    eng.update(batch([Rec(1, b), Rec(2, perturb(b, 10, 4)), Rec(3, base_bits(5))]), [])
    p = persons(eng, [1, 2, 3])
    assert p[0] == p[1] != p[2]


def test_conflicting_nhs_tokens_never_merge() -> None:
    b = base_bits(6)
    recs = [
        Rec(1, b, exact={"nhs_number": b"n" * 24}),
        Rec(2, b, agency=1, exact={"nhs_number": b"m" * 24}),
    ]
    eng = engine()
    delta = eng.update(batch(recs), [])
    p = persons(eng, [1, 2])
    assert p[0] != p[1]
    assert not delta.links


def test_conflict_blocks_a_merge_through_a_third_record() -> None:
    # 1 and 3 carry different NHS numbers; 2 (no token) is close to both
    b = base_bits(7)
    recs = [
        Rec(1, perturb(b, 5, 8), exact={"nhs_number": b"n" * 24}),
        Rec(2, b, agency=1),
        Rec(3, perturb(b, 5, 9), agency=2, exact={"nhs_number": b"m" * 24}),
    ]
    eng = engine()
    eng.update(batch(recs), [])
    p = persons(eng, [1, 2, 3])
    assert p[0] != p[2]


def test_shared_token_links_below_threshold() -> None:
    b = base_bits(10)
    far = perturb(b, 120, 11)  # Dice 0.76: below the match threshold on its own
    eng = engine()
    eng.update(batch([Rec(1, b), Rec(2, far, agency=1)]), [])
    assert persons(eng, [1, 2])[0] != persons(eng, [1, 2])[1]
    tok = {"nhs_number": b"t" * 24}
    eng = engine()
    delta = eng.update(batch([Rec(1, b, exact=tok), Rec(2, far, agency=1, exact=tok)]), [])
    assert len(set(persons(eng, [1, 2]))) == 1
    assert delta.links[0][3]["tokens_agreed"] == ["nhs_number"]


@pytest.mark.parametrize("model", ["none", "prior", "related", "dice"])
def test_link_evidence_written_as_json_is_the_evidence_dict_as_the_service_stores_it(
    model: str,
) -> None:
    # json_rows writes each pair's evidence without building its dict: the same text
    # as the dict through the service's serialiser, for every field's odd values
    # (missing gaps and addresses, decisions both ways, masks, many patterns)
    rng = np.random.default_rng(7)
    n = 3 * Evidence._CHUNK + 5  # several chunks and a partial one
    patterns = int(np.prod(SIZES))
    a = rng.permutation(n).astype(np.int64)
    b = a + n
    columns = [
        a,
        b,
        rng.random(n),
        rng.integers(0, patterns, n),
        np.round(rng.random(n), 6),
        rng.integers(0, 8, n),
        rng.integers(0, 8, n),
        rng.random(n) < 0.5,
        np.where(rng.random(n) < 0.3, np.nan, np.round(rng.random(n) * 40, 2)),
        rng.integers(0, 6, n),
        rng.integers(0, 3, n),
        np.where(rng.random(n) < 0.3, np.nan, np.round(rng.random(n), 4)),
    ]
    prior = prior_model()
    chosen = {
        "none": None,
        "prior": prior,
        "related": dataclasses.replace(prior, r=prior.u, rho=0.1),
        "dice": dice_model(),
    }[model]
    decisions = {(int(a[0]), int(b[0])): True, (int(a[1]), int(b[1])): False}
    evidence = Evidence(chosen, ("nhs_number", "upn", "id:case"), *columns, decisions=decisions)
    written = list(evidence.json_rows())
    assert written == [(x, y, s, _dumps_fast(dict(e))) for x, y, s, e in evidence]
    assert '"clerical_decision":"match"' in written[0][3]
    assert '"clerical_decision":"non_match"' in written[1][3]
    assert ("comparisons" in written[2][3]) == (chosen is not None)


def test_link_evidence_reads_the_same_by_index_slice_and_iteration() -> None:
    b = base_bits(30)
    tok = {"nhs_number": b"t" * 24}
    recs = [Rec(1, b, exact=tok), Rec(2, perturb(b, 5, 31), agency=1, exact=tok)]
    recs.append(Rec(3, perturb(b, 8, 32), agency=2, addr=base_bits(33), age=41))
    delta = engine().update(batch(recs), [])
    links = list(delta.links)
    assert len(links) == len(delta.links) >= 2
    assert [delta.links[k] for k in range(len(links))] == links
    assert delta.links[-1] == links[-1] and delta.links[:2] == links[:2]
    a, b_, score, evidence = links[0]
    assert isinstance(a, int) and isinstance(score, float)
    assert evidence["probability"] == score
    # the score is explained comparison by comparison, and the weights add up to it
    comparisons = evidence["comparisons"]
    assert isinstance(comparisons, dict) and comparisons["checked_id"]["level"] == "agree"
    weight = float(evidence["prior_weight"]) + sum(c["weight"] for c in comparisons.values())
    assert score == pytest.approx(1 / (1 + 2**-weight), abs=1e-3)
    assert set(evidence) == {
        "probability",
        "match_model",
        "prior_weight",
        "comparisons",
        "dice",
        "tokens_agreed",
        "tokens_conflicting",
        "sex_disagrees",
        "birth_year_gap",
        "blocking_keys_agreed",
        "blocking_keys_differing",
        "address_dice",
    }
    with pytest.raises(IndexError):
        delta.links[len(links)]


def test_review_band_pairs_are_reported_not_decided() -> None:
    b = base_bits(12)
    mid = perturb(b, 125, 13)  # Dice 0.75: between review (0.7) and match (0.8)
    eng = engine()
    key = {"family_dob": b"k" * 12}  # a shared keyed blocking key makes them candidates
    delta = eng.update(batch([Rec(1, b, block=key), Rec(2, mid, agency=1, block=key)]), [])
    p = persons(eng, [1, 2])
    assert p[0] != p[1]
    assert [(x, y) for x, y, _, _ in delta.review] == [(1, 2)]
    score = delta.review[0][2]
    assert EngineConfig().review_threshold <= score < EngineConfig().match_threshold
    assert not delta.links


def test_sex_and_age_are_evidence_against() -> None:
    b = base_bits(14)
    near = perturb(b, 90, 15)  # Dice 0.82
    eng = engine()
    eng.update(batch([Rec(1, b, sex=1), Rec(2, near, agency=1, sex=2, age=20)]), [])
    p = persons(eng, [1, 2])
    assert p[0] != p[1]


@st.composite
def groups(draw: st.DrawFn) -> list[Rec]:
    n_people = draw(st.integers(1, 6))
    recs: list[Rec] = []
    rid = 1
    for person in range(n_people):
        base = base_bits(draw(st.integers(0, 10_000)))
        for copy in range(draw(st.integers(1, 4))):
            noise = draw(st.integers(0, 150))
            bits = perturb(base, noise, person * 10 + copy) if noise else base
            recs.append(Rec(rid, bits, agency=copy % 3))
            rid += 1
    return recs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups())
def test_persons_are_a_deterministic_partition(recs: list[Rec]) -> None:
    ids = [r.id for r in recs]
    runs = []
    for _ in range(2):
        eng = engine()
        delta = eng.update(batch(recs), [])
        assert sorted(delta.person_of) == ids
        held = sorted(rid for pid in eng.pid_root for rid in eng.person_records(pid))
        assert held == ids  # every record in exactly one person
        runs.append((delta.person_of, sorted(delta.review), sorted(delta.links)))
        # links join records of one person; review pairs are never inside one
        for x, y, _, _ in delta.links:
            assert delta.person_of[x] == delta.person_of[y]
        for x, y, _, _ in delta.review:
            assert delta.person_of[x] != delta.person_of[y]
    assert runs[0] == runs[1]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 19), st.integers(0, 19), st.floats(0, 1)), max_size=60),
    st.integers(0, 19),
)
def test_agglomerate_respects_the_cohesion_check(
    edges: list[tuple[int, int, float]], banned: int
) -> None:
    clusters = Clusters()
    for r in range(20):
        clusters.add([r])
    other = (banned + 1) % 20
    # an edge must pass the check on its own (agglomerate only checks grown clusters)
    edges = [e for e in edges if {e[0], e[1]} != {banned, other}]
    i = np.array([e[0] for e in edges], dtype=np.int64)
    j = np.array([e[1] for e in edges], dtype=np.int64)
    s = np.array([e[2] for e in edges], dtype=np.float64)
    # row `banned` may never share a cluster with row (banned + 1) % 20

    def coheres(a: list[int], b: list[int]) -> bool:
        sa, sb = set(a), set(b)
        return not ((banned in sa and other in sb) or (banned in sb and other in sa))

    agglomerate(clusters, i, j, s, coheres)
    assert clusters.find(banned) != clusters.find(other)
    rows = sorted(r for m in clusters.clusters() for r in m)
    assert rows == list(range(20))
    for m in clusters.clusters():
        assert clusters.members(clusters.find(m[0])) == m


def _grouped(groups: list[list[int]]) -> Clusters:
    c = Clusters()
    for g in groups:
        c.add(g)
    return c


@st.composite
def _start_and_edges(draw: st.DrawFn) -> tuple[list[list[int]], list[tuple[int, int, float]]]:
    rows = draw(st.lists(st.integers(0, 60), min_size=2, max_size=40, unique=True))
    cuts = sorted(draw(st.lists(st.integers(1, len(rows) - 1), max_size=12, unique=True)))
    groups = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    # scores from a few values, so that ties (ordered by rows) are common
    edges = draw(
        st.lists(
            st.tuples(
                st.sampled_from(rows), st.sampled_from(rows), st.sampled_from([0.5, 0.7, 0.9])
            ),
            max_size=80,
        )
    )
    return groups, edges


@settings(max_examples=300, deadline=None)
@given(_start_and_edges(), st.integers(2, 6), st.integers(0, 60))
def test_the_compiled_agglomerate_does_what_the_reference_does(
    start: tuple[list[list[int]], list[tuple[int, int, float]]], largest: int, banned: int
) -> None:
    groups, edges = start
    i = np.array([e[0] for e in edges], dtype=np.int64)
    j = np.array([e[1] for e in edges], dtype=np.int64)
    s = np.array([e[2] for e in edges], dtype=np.float64)
    runs = []
    for fn in (agglomerate, agglomerate_reference):
        clusters = _grouped(groups)
        calls: list[tuple[list[int], list[int]]] = []

        def coheres(a: list[int], b: list[int], calls=calls) -> bool:
            calls.append((list(a), list(b)))
            return len(a) + len(b) <= largest and not (banned in a and banned + 1 in b)

        refused = fn(clusters, i, j, s, coheres)
        runs.append(
            (
                refused.tolist(),
                calls,
                clusters.roots(),
                [clusters.members(r) for r in sorted(set(clusters.roots())) if r >= 0],
            )
        )
    # the same refusals, the same questions asked in the same order, the same
    # roots and member lists in the same order
    assert runs[0] == runs[1]


def _filters(seed: int, rows: int) -> np.ndarray:
    """Address-like filters: a few streets' worth of patterns, each row one with noise,
    so that cross pairs fall on both sides of a floor."""
    rng = np.random.default_rng(seed)
    bases = rng.integers(0, 2**63, size=(4, 2), dtype=np.uint64)
    noise = rng.integers(0, 2**63, size=(rows, 2), dtype=np.uint64)
    keep = rng.integers(0, 2**63, size=(rows, 2), dtype=np.uint64)
    out = bases[rng.integers(0, 4, size=rows)] & (keep | keep >> np.uint64(1))
    out |= noise & (noise >> np.uint64(3)) & (noise >> np.uint64(7))
    return out


@settings(max_examples=300, deadline=None)
@given(
    _start_and_edges(),
    st.integers(0, 2**16),
    st.sampled_from([0.0, 0.3, 0.5, 0.6, 1.0]),
    st.booleans(),
)
def test_agglomerate_by_dice_does_what_the_reference_does_with_the_dice_check(
    start: tuple[list[list[int]], list[tuple[int, int, float]]],
    seed: int,
    floor: float,
    far: bool,
) -> None:
    groups, edges = start
    # far: one more row held far away, so that the edges are few for the rows held
    # (the compiled loop numbers clusters by sorting then, not through a map of rows)
    filters = _filters(seed, 4001 if far else 61)
    if far:
        groups = [*groups, [4000]]
    i = np.array([e[0] for e in edges], dtype=np.int64)
    j = np.array([e[1] for e in edges], dtype=np.int64)
    s = np.array([e[2] for e in edges], dtype=np.float64)
    compiled = _grouped(groups)
    refused = agglomerate_by_dice(compiled, i, j, s, filters, floor)
    reference = _grouped(groups)
    expected = agglomerate_reference(
        reference, i, j, s, lambda a, b: _kernel_ref.dice_all_at_least(filters, a, b, floor)
    )
    assert refused.tolist() == expected.tolist()
    assert compiled.roots() == reference.roots()
    roots = sorted({r for r in reference.roots() if r >= 0})
    # the same member lists, in the same order, and no list left for a row that
    # is no longer a root
    assert [compiled.members(r) for r in roots] == [reference.members(r) for r in roots]
    assert compiled._groups.keys() == reference._groups.keys()


def test_agglomerate_by_dice_has_no_cap_on_a_cluster_s_size() -> None:
    # 600 copies of one address and one other: the dict callback's kernel checks at
    # most 256 rows a side in one call; the compiled check has no such limit
    filters = np.zeros((601, 2), dtype=np.uint64)
    filters[:600] = [0xFFFF, 0xFF]
    filters[600] = [0xFFFF0000, 0xFF00]
    rows = np.arange(601, dtype=np.int64)
    c = Clusters()
    c.add_alone(rows)
    i, j = np.zeros(600, dtype=np.int64), rows[1:]
    s = np.linspace(1.0, 0.5, 600)
    refused = agglomerate_by_dice(c, i, j, s, filters, 0.5)
    assert c.members(0) == list(range(600))
    assert refused.tolist() == [False] * 599 + [True]  # 600 is another address
    assert c.find(600) == 600 and c.members(600) == [600]


def test_agglomerate_by_dice_names_the_row_no_cluster_holds() -> None:
    filters = _filters(1, 12)
    c = _grouped([[0, 1], [2], [3]])
    edge = (np.array([0, 2], dtype=np.int64), np.array([2, 9], dtype=np.int64))
    with pytest.raises(KeyError, match="9"):
        agglomerate_by_dice(c, *edge, np.array([0.9, 0.8]), filters, 0.0)
    # checked before any edge is applied: nothing changed
    assert c.roots() == [0, 0, 2, 3] and c._groups == {0: [0, 1]}


def test_the_compiled_agglomerate_raises_what_the_reference_raises() -> None:
    for fn in (agglomerate, agglomerate_reference):
        clusters = _grouped([[0, 1], [2], [3]])
        edge = (np.array([0, 2], dtype=np.int64), np.array([2, 9], dtype=np.int64))
        with pytest.raises(KeyError):  # row 9 is not held
            fn(clusters, *edge, np.array([0.9, 0.8]), lambda a, b: True)

        def broken(a: list[int], b: list[int]) -> bool:
            raise RuntimeError("the check failed")

        with pytest.raises(RuntimeError, match="the check failed"):
            fn(_grouped([[0, 1], [2]]), *edge, np.array([0.9, 0.8]), broken)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=25, unique=True),
    st.lists(st.tuples(st.integers(0, 24), st.integers(0, 24)), max_size=40),
    st.lists(st.integers(0, 24), max_size=5),
)
def test_clusters_match_a_reference_partition(
    rows: list[int], unions: list[tuple[int, int]], removals: list[int]
) -> None:
    # reference: a plain list of sets
    clusters = Clusters()
    ref: list[set[int]] = []
    for r in rows:
        clusters.add([r])
        ref.append({r})
    for x, y in unions:
        a, b = rows[x % len(rows)], rows[y % len(rows)]
        ra, rb = clusters.find(a), clusters.find(b)
        if ra != rb:
            clusters.union(ra, rb)
            sa = next(s for s in ref if a in s)
            sb = next(s for s in ref if b in s)
            ref.remove(sb)
            sa |= sb
    for x in removals:
        r = rows[x % len(rows)]
        if clusters.holds(r):
            gone = set(clusters.remove(clusters.find(r)))
            assert gone in ref
            ref.remove(gone)
            assert not any(clusters.holds(g) for g in gone)
            with pytest.raises(KeyError):
                clusters.find(r)
    assert sorted(map(sorted, clusters.clusters())) == sorted(map(sorted, ref))
    for s in ref:
        root = clusters.find(next(iter(s)))
        assert {clusters.find(r) for r in s} == {root}
        assert set(clusters.members(root)) == s
        assert all(clusters.members(r) == [] for r in s if r != root)
    assert not clusters.holds(-1) and not clusters.holds(10_000)
    for outside in (-1, 10_000):
        with pytest.raises(KeyError):
            clusters.find(outside)
        assert clusters.members(outside) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=60))
def test_roots_of_every_row_at_once_agree_with_find(edges: list[tuple[int, int]]) -> None:
    c = Clusters()
    for r in range(0, 42, 2):  # odd rows are never held
        c.add([r])
    for a, b in edges:
        if c.holds(a) and c.holds(b) and c.find(a) != c.find(b):
            c.union(c.find(a), c.find(b))
    roots = c.roots()
    assert roots == [c.find(r) if c.holds(r) else -1 for r in range(len(roots))]
    # of a few rows (find each) and of many (the whole array once)
    held = np.arange(0, 42, 2, dtype=np.int64)
    for rows in (held[:1], held[::-1], np.repeat(held, 3)):
        assert c.roots_of(rows).tolist() == [c.find(r) for r in rows.tolist()]
    # a row no cluster holds is named, whichever way the roots are read
    for outside in (1, 41, 500, -1):
        for rows in (np.array([outside]), np.r_[np.repeat(held, 3), outside]):
            with pytest.raises(KeyError, match=str(outside)):
                c.roots_of(rows)


def test_rows_added_alone_are_clusters_of_one_row() -> None:
    c = Clusters()
    c.add([3, 5])
    c.add_alone(np.array([9, 0, 7], dtype=np.int64))
    c.add_alone(np.zeros(0, dtype=np.int64))
    assert c.roots() == [0, -1, -1, 3, -1, 3, -1, 7, -1, 9]
    assert [c.members(r) for r in (0, 7, 9)] == [[0], [7], [9]]
    assert not c.holds(8) and not c.holds(10)


def test_pairs_within_gives_each_groups_pairs_once() -> None:
    groups = [[4], [9, 2], [], [7, 3, 5], [1, 8, 0, 6], [10, 11, 12]]
    i, j = pairs_within(groups)
    want = {(g[a], g[b]) for g in groups for a in range(len(g)) for b in range(a + 1, len(g))}
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(want)
    assert len(i) == len(want) == 1 + 3 + 6 + 3
    assert pairs_within([[1], []])[0].size == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=24, max_size=24),
    st.lists(st.sampled_from([0.2, 0.5, 0.5, 0.7, 0.9, 0.9]), min_size=300, max_size=300),
    st.integers(0, 23),
)
def test_disjoint_groups_agglomerate_in_one_pass_as_one_pass_each(
    label: list[int], scores: list[float], banned: int
) -> None:
    """What lets a removal re-cluster every person (and place) it touched in one call."""
    groups = [[r for r in range(24) if label[r] == g] for g in range(6)]
    i, j = pairs_within(groups)
    s = np.asarray(scores[: i.size], dtype=np.float64)
    other = (banned + 1) % 24

    def coheres(a: list[int], b: list[int]) -> bool:
        sa, sb = set(a), set(b)
        return not ((banned in sa and other in sb) or (banned in sb and other in sa))

    keep = ~(((i == banned) & (j == other)) | ((i == other) & (j == banned)))
    i, j, s = i[keep], j[keep], s[keep]
    at_once, each = Clusters(), Clusters()
    for c in (at_once, each):
        for r in range(24):
            c.add([r])
    refused_once = agglomerate(at_once, i, j, s, coheres)
    refused_each = np.zeros(i.size, dtype=np.bool_)
    for g in groups:
        mine = np.isin(i, g)
        refused_each[mine] = agglomerate(each, i[mine], j[mine], s[mine], coheres)
    assert (refused_once == refused_each).all()
    for r in range(24):
        assert at_once.find(r) == each.find(r)
        assert at_once.members(at_once.find(r)) == each.members(each.find(r))


@pytest.mark.parametrize("sort_rows", [True, False])
def test_edges_are_applied_strongest_first_then_by_rows(sort_rows: bool) -> None:
    # pairs in code order take the stable sort by score alone; others, lexsort
    rng = np.random.default_rng(7)
    i = rng.integers(0, 50, 5000)
    j = rng.integers(0, 50, 5000)
    score = rng.integers(0, 8, 5000) / 8.0  # many ties
    if sort_rows:
        by_rows = np.lexsort((j, i))
        i, j, score = i[by_rows], j[by_rows], score[by_rows]
    assert _in_row_order(i, j) is sort_rows
    _, _, order, _ = _edges(i, j, score)
    assert np.array_equal(order, np.lexsort((j, i, -score)))
