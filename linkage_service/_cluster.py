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

from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
CohereCheck = Callable[[list[int], list[int]], bool]


class Clusters:
    """A partition of row numbers with union by size and the member lists of each root."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}

    def add(self, group: Iterable[int]) -> int:
        """Add a new cluster of rows not yet held; returns its root (the smallest row)."""
        rows = sorted(group)
        root = rows[0]
        for r in rows:
            self.parent[r] = root
        self.members[root] = rows
        return root

    def find(self, r: int) -> int:
        """Root of the cluster holding row ``r``."""
        parent = self.parent
        root = r
        while parent[root] != root:
            root = parent[root]
        while parent[r] != root:
            parent[r], r = root, parent[r]
        return root

    def union(self, a: int, b: int) -> int:
        """Merge the clusters rooted at ``a`` and ``b``; returns the surviving root."""
        ma, mb = self.members[a], self.members[b]
        if (len(ma), -a) < (len(mb), -b):
            a, b, ma, mb = b, a, mb, ma
        self.parent[b] = a
        ma.extend(mb)
        del self.members[b]
        return a


def agglomerate(
    clusters: Clusters, i: I64, j: I64, score: F64, coheres: CohereCheck
) -> npt.NDArray[np.bool_]:
    """Apply edges (i, j, score), strongest first (ties by rows), under the cohesion check.

    Every row named by an edge must already be in ``clusters``, and every edge must
    pass the check on its own (two single rows are joined without calling it). Returns, per edge,
    whether it was refused by the check (both ends still in different clusters
    because the clusters do not cohere).
    """
    refused = np.zeros(i.shape[0], dtype=np.bool_)
    order = np.lexsort((j, i, -score))
    ii, jj = i.tolist(), j.tolist()
    find, members = clusters.find, clusters.members
    for k in order.tolist():
        ra, rb = find(ii[k]), find(jj[k])
        if ra == rb:
            continue
        ma, mb = members[ra], members[rb]
        # a lone pair is exactly the edge, which is strong by construction
        if (len(ma) > 1 or len(mb) > 1) and not coheres(ma, mb):
            refused[k] = True
            continue
        clusters.union(ra, rb)
    return refused
