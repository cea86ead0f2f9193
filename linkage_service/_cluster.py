"""Constrained agglomerative clustering: records into persons (and addresses into places).

Owns the merge rule of the matching engine. Edges are taken strongest first;
an edge joins its two clusters only if the clusters *cohere*: a caller-supplied
check over every pair across the two clusters (for persons: no conflicting
exact token and no pair scoring below the non-match threshold). So A~B strong
and B~C strong never make one person of A and C when A and C are a strong
non-match: one bad link cannot chain unrelated people together. Edges refused
by the check are returned, for clerical review.

Clusters may start from existing groups (incremental linkage keeps what is held
and only merges into it). Clusters are small (a person has a handful of records),
so checking every cross pair is cheap.

Must never: depend on record content beyond the callback, use randomness.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from . import _dice

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
CohereCheck = Callable[[list[int], list[int]], bool]
_SLICE = 1 << 16


class Clusters:
    """A partition of row numbers with union by size and the member lists of each root.

    Built for a million rows, most of them alone: the parent of each row is one
    slot of an ``array('q')`` (-1 = row not held), and member lists exist only for
    clusters of two rows or more (a singleton's members are itself).
    """

    def __init__(self) -> None:
        self._parent = array("q")
        self._groups: dict[int, list[int]] = {}

    def holds(self, r: int) -> bool:
        """Whether row ``r`` is in some cluster."""
        return 0 <= r < len(self._parent) and self._parent[r] >= 0

    def add(self, group: Iterable[int]) -> int:
        """Add a new cluster of rows not yet held; returns its root (the smallest row)."""
        rows = sorted(group)
        root = rows[0]
        short = rows[-1] + 1 - len(self._parent)
        if short > 0:
            self._parent.extend(array("q", [-1]) * short)
        for r in rows:
            self._parent[r] = root
        if len(rows) > 1:
            self._groups[root] = rows
        return root

    def add_alone(self, rows: I64) -> None:
        """Add each of ``rows`` (distinct, none held yet) as a cluster of its own.

        :meth:`add` of one row each, for a whole batch in one numpy step.
        """
        if not rows.size:
            return
        short = int(rows.max()) + 1 - len(self._parent)
        if short > 0:
            self._parent.extend(array("q", [-1]) * short)
        np.frombuffer(self._parent, dtype=np.int64)[rows] = rows

    def find(self, r: int) -> int:
        """Root of the cluster holding row ``r`` (``KeyError`` if no cluster does)."""
        parent = self._parent
        root = parent[r] if 0 <= r < len(parent) else -1
        if root < 0:
            raise KeyError(r)
        if root == r:
            return r  # a root, most often a row alone
        while parent[root] != root:
            root = parent[root]
        while parent[r] != root:
            parent[r], r = root, parent[r]
        return root

    def roots(self) -> list[int]:
        """The root of every row (-1 for a row no cluster holds), all at once.

        For a pass that reads many rows' clusters while the partition stands still:
        pointer jumping over the parent array, a few numpy steps for all rows rather
        than a :meth:`find` per row.
        """
        out: list[int] = self.root_array().tolist()
        return out

    def root_array(self) -> I64:
        """:meth:`roots` as an array (one slot per row up to the highest row held)."""
        up = np.frombuffer(self._parent, dtype=np.int64).copy()
        held = np.flatnonzero(up >= 0)
        while held.size:
            nxt = up[up[held]]
            moved = nxt != up[held]
            up[held] = nxt
            held = held[moved]
        return up

    def roots_of(self, rows: I64) -> I64:
        """The root of each of ``rows``: :meth:`find` for a few rows, :meth:`root_array`
        once for many (``KeyError`` naming a row no cluster holds, as :meth:`find`)."""
        if rows.size > len(self._parent) >> 6:
            inside = (rows >= 0) & (rows < len(self._parent))
            got = np.full(rows.size, -1, dtype=np.int64)
            got[inside] = self.root_array()[rows[inside]]
            if (got < 0).any():
                raise KeyError(int(rows[np.argmax(got < 0)]))
            return got
        return np.fromiter(map(self.find, rows.tolist()), dtype=np.int64, count=rows.size)

    def members(self, root: int) -> list[int]:
        """Rows of the cluster rooted at ``root`` (empty if ``root`` is not a root).

        The list is the cluster's own: read it, do not change it.
        """
        got = self._groups.get(root)
        if got is not None:
            return got
        parent = self._parent
        return [root] if 0 <= root < len(parent) and parent[root] == root else []

    def union(self, a: int, b: int) -> int:
        """Merge the clusters rooted at ``a`` and ``b``; returns the surviving root."""
        ma, mb = self.members(a), self.members(b)
        if (len(ma), -a) < (len(mb), -b):
            a, b, ma, mb = b, a, mb, ma
        self._parent[b] = a
        if a not in self._groups:
            ma = self._groups[a] = list(ma)
        ma.extend(mb)
        self._groups.pop(b, None)
        return a

    def remove(self, root: int) -> list[int]:
        """Take the cluster rooted at ``root`` out; returns its rows (no longer held)."""
        rows = self._groups.pop(root, None) or self.members(root)
        for r in rows:
            self._parent[r] = -1
        return rows

    def clusters(self) -> Iterator[list[int]]:
        """Every cluster's rows, by root."""
        for r, p in enumerate(self._parent):
            if p == r:
                yield self.members(r)


def pairs_within(groups: Sequence[Sequence[int]]) -> tuple[I64, I64]:
    """Every pair of rows ``(a, b)`` inside one of ``groups``, ``a`` listed before ``b``.

    The groups of one size are paired in one numpy step (sizes are few), not a
    step each; the pairs come grouped by size, in no other order.
    """
    by_size: dict[int, list[Sequence[int]]] = {}
    for g in groups:
        if len(g) > 1:
            by_size.setdefault(len(g), []).append(g)
    ii: list[I64] = []
    jj: list[I64] = []
    for size, same in sorted(by_size.items()):
        rows = np.asarray(same, dtype=np.int64).reshape(len(same), size)
        a, b = np.triu_indices(size, 1)
        ii.append(rows[:, a].reshape(-1))
        jj.append(rows[:, b].reshape(-1))
    if not ii:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(ii), np.concatenate(jj)


def _edges(i: I64, j: I64, score: F64) -> tuple[I64, I64, I64, npt.NDArray[np.bool_]]:
    """The edges as the compiled loops take them: contiguous int64 ends, the order
    they are applied in (strongest first, ties by rows) and a refusal flag each."""
    i = np.ascontiguousarray(i, dtype=np.int64)
    j = np.ascontiguousarray(j, dtype=np.int64)
    if _in_row_order(i, j):
        # scored pairs come in code order, (i, j) sorted: a stable sort by score
        # alone keeps them so within a score, a quarter of lexsort's time
        order = np.argsort(-score, kind="stable")
    else:
        order = np.lexsort((j, i, -score))
    return i, j, order.astype(np.int64, copy=False), np.zeros(i.shape[0], dtype=np.bool_)


def _in_row_order(i: I64, j: I64) -> bool:
    """Whether the pairs (i, j) are sorted by i, then j."""
    if i.size < 2:
        return True
    di = i[1:] - i[:-1]
    return bool(((di > 0) | ((di == 0) & (j[1:] >= j[:-1]))).all())


def agglomerate(
    clusters: Clusters, i: I64, j: I64, score: F64, coheres: CohereCheck
) -> npt.NDArray[np.bool_]:
    """Apply edges (i, j, score), strongest first (ties by rows), under the cohesion check.

    Every row named by an edge must already be in ``clusters``, and every edge must
    pass the check on its own (two single rows are joined without calling it). Returns, per edge,
    whether it was refused by the check (both ends still in different clusters
    because the clusters do not cohere).

    The loop over the edges is compiled (``_dice.agglomerate``): the same steps as
    :func:`agglomerate_reference`, which the tests hold it to, without a Python
    call per edge; ``coheres`` is still called for every edge between clusters
    of which one has more than one row.
    """
    i, j, order, refused = _edges(i, j, score)
    _dice.agglomerate(clusters._parent, clusters._groups, i, j, order, refused, coheres)
    return refused


def agglomerate_by_dice(
    clusters: Clusters, i: I64, j: I64, score: F64, filters: npt.NDArray[np.uint64], floor: float
) -> npt.NDArray[np.bool_]:
    """:func:`agglomerate` whose check is "every cross pair's Dice over ``filters`` is
    at least ``floor``" (``kernel.dice_all_at_least``), with no cap on a cluster's size.

    The same steps and answers, but the check is compiled with the loop, which runs
    without the interpreter lock: places are clustered on one core while the
    persons' Python runs on another. Nothing else may touch ``clusters`` meanwhile.
    """
    i, j, order, refused = _edges(i, j, score)
    _dice.agglomerate_dice(
        clusters._parent, clusters._groups, i, j, order, refused, filters, float(floor)
    )
    return refused


def agglomerate_reference(
    clusters: Clusters, i: I64, j: I64, score: F64, coheres: CohereCheck
) -> npt.NDArray[np.bool_]:
    """:func:`agglomerate` in Python: slow, obvious, and the oracle for the compiled loop."""
    refused = np.zeros(i.shape[0], dtype=np.bool_)
    order = np.lexsort((j, i, -score))
    find, members = clusters.find, clusters.members
    # edges become Python ints a slice at a time: millions of address edges as
    # lists would cost about 80 bytes each
    for lo in range(0, order.size, _SLICE):
        part = order[lo : lo + _SLICE]
        for k, a, b in zip(part.tolist(), i[part].tolist(), j[part].tolist(), strict=True):
            ra, rb = find(a), find(b)
            if ra == rb:
                continue
            ma, mb = members(ra), members(rb)
            # a lone pair is exactly the edge, which is strong by construction
            if (len(ma) > 1 or len(mb) > 1) and not coheres(ma, mb):
                refused[k] = True
                continue
            clusters.union(ra, rb)
    return refused
