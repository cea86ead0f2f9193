"""The engine's pair stages as Dask tasks, for linkages beyond one process or machine.

Owns :class:`DaskPairs`, the optional backend of :class:`._engine.LinkageEngine`
that runs candidate generation, deduplication, model-estimation counts and
scoring on a ``dask.distributed`` cluster (a :class:`~distributed.LocalCluster`
by default, any scheduler by address). The plan of one update:

1. *blocking*: one task per blocking key (an LSH band, an agency's blocking key,
   an exact-token type, an address band), each running :func:`._blocking.block_codes`
   on that key's column alone and cutting its pair codes ``i * n + j`` into
   ``partitions`` ranges of ``i`` (row ranges, so code ranges);
2. *deduplication*: one task per range gathers that range's piece of every key
   and keeps each code once: distinct within a range is distinct overall;
3. *estimation* (when the model is due): one task per range computes the
   comparison pattern of each of its codes (two bytes a pair, kept on the
   worker beside the codes) and another counts them; the driver sums the
   histograms and runs EM as before;
4. *scoring*: one task per range scores its codes against the record features
   and returns only the pairs at or above the review floor, filtering by the
   patterns kept at estimation when it has them (each pair compared once, as the
   in-process engine does).

The record features go to each worker once an update (:meth:`DaskPairs.send`),
not once a stage: the estimation, the scoring and the places' address
comparisons (:meth:`DaskPairs.dice_above`) all read that copy.

The driver concatenates the ranges in order, which is the code order the
in-process engine produces, then clusters, names and groups into households
exactly as it does: results are identical by construction (clustering sorts
its edges by score and rows, not by arrival). Codes stay on the workers between
stages; only the pairs worth clustering come back.

Errors: a cluster that cannot be reached or fails a task raises
:class:`DistributedError` (a :class:`._errors.EngineError`).

Must never: send anything but encodings and coarse attributes to a worker (the
same columns the in-process engine holds), log record content, hold a secret.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _kernel as kernel
from ._blocking import U64, BlockSpec, block_codes, decode_pairs, sorted_distinct
from ._errors import EngineError
from ._matchmodel import MatchModel
from ._scoring import (
    Features,
    PairScores,
    _concat,
    pattern_array,
    pattern_histogram,
    score_pairs_above,
)

__all__ = ["BlockSpec", "Candidates", "DaskPairs", "DistributedError"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_CHUNK = 1 << 18  # pairs compared at a time inside a task (bounded temporaries)
_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads key values over the shares
# rows of one key column blocked by one task: a block task's temporaries grow with
# the pairs its blocks make (up to 2 * window + 1 a row), so a bigger column is
# blocked in hash shares of its key values, each share whole blocks
ROWS_PER_BLOCK_TASK = 1_000_000


class DistributedError(EngineError):
    """The Dask cluster could not be reached, or a task on it failed."""


@dataclass
class Candidates:
    """Distinct candidate pair codes held on the workers, one future per row range."""

    parts: list[Any]  # distributed.Future of an I64 of sorted distinct codes
    size: int
    n: int
    # distributed.Future of each part's int16 comparison patterns, once counted
    patterns: list[Any] | None = None


# ---------------------------------------------------------------- task bodies (run on workers)
def _bounds(n: int, partitions: int) -> I64:
    """Code boundaries of ``partitions`` row ranges of ``n`` rows (``i * n`` at each cut).

    A pair is filed under its lower row, and the lower of two rows of a block is
    more often an early one (for uniform rows, a fraction ``1 - (1 - x)**2`` of
    pairs has its lower row below ``x * n``), so equal row ranges would give the
    first range several times the pairs of the last; the cuts at
    ``1 - sqrt(1 - k / partitions)`` give each range about as many pairs.
    """
    k = np.arange(partitions + 1, dtype=np.float64) / partitions
    rows = np.round((1.0 - np.sqrt(1.0 - k)) * n).astype(np.int64)
    rows[0], rows[-1] = 0, n
    return rows * np.int64(n)


def _key_share(key: U64, share: int, shares: int) -> U64:
    """``key`` with every value outside hash share ``share`` of ``shares`` set to 0 (no key).

    A block is all the rows with one key value, so each share holds whole blocks
    and the shares' pairs together are exactly the key's pairs.
    """
    if shares == 1:
        return key
    with np.errstate(over="ignore"):
        h = (key * np.uint64(_MIX)) >> np.uint64(33)
    out: U64 = np.where(h % np.uint64(shares) == np.uint64(share), key, np.uint64(0))
    return out


def _block_task(
    key: U64,
    within: U64 | None,
    window: int,
    is_new: npt.NDArray[np.bool_],
    alive: npt.NDArray[np.bool_],
    n: int,
    partitions: int,
    share: int = 0,
    shares: int = 1,
) -> list[I64]:
    """One key's (hash share's) pair codes, cut into the row ranges, unsorted.

    The kernel's walk gives each pair of a key once, and a share holds whole
    blocks, so there is nothing to deduplicate here: :func:`_merge_task` sorts each
    range once, every key's pieces together. (Sorting each key's codes here as
    well took more than half of a block task at 10M records, and the merge's sort
    of sorted runs was slower, not faster, than of unsorted codes.)
    """
    codes = block_codes(_key_share(key, share, shares), is_new, window, alive, within=within)
    return _cut(codes, _bounds(n, partitions)[1:-1])


def _cut(codes: I64, inner: I64) -> list[I64]:
    """``codes`` by row range: those below ``inner[0]``, then up to ``inner[1]``, ...,
    each range's in the order they came."""
    at = np.searchsorted(inner, codes, side="right")
    if inner.size < 16:  # a pass per range costs less than a sort
        return [codes[at == p] for p in range(inner.size + 1)]
    order = np.argsort(at, kind="stable")
    ends = np.cumsum(np.bincount(at, minlength=inner.size + 1))[:-1]
    return np.split(codes[order], ends)


def _merge_task(*pieces: I64) -> I64:
    """One row range's codes from every key, each once, sorted."""
    return sorted_distinct(np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64))


def _patterns_task(f: Features, codes: I64, n: int) -> npt.NDArray[np.int16]:
    return pattern_array(f, codes, n)


def _score_task(
    f: Features,
    codes: I64,
    n: int,
    model: MatchModel,
    floor: float,
    patterns: npt.NDArray[np.int16] | None,
) -> tuple[I64, I64, PairScores]:
    return score_pairs_above(f, codes, n, model, floor, patterns=patterns)


def _dice_task(
    filters: Features | U64, codes: I64, n: int, threshold: float
) -> tuple[I64, I64, F64]:
    addr = filters.addr if isinstance(filters, Features) else filters
    ei: list[I64] = []
    ej: list[I64] = []
    ed: list[F64] = []
    for k in range(0, codes.size, _CHUNK):
        i, j = decode_pairs(codes[k : k + _CHUNK], n)
        d = kernel.dice_pairs(addr, addr, i, j)
        m = d >= threshold
        ei.append(i[m])
        ej.append(j[m])
        ed.append(d[m])
    if not ei:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), np.zeros(0)
    return np.concatenate(ei), np.concatenate(ej), np.concatenate(ed)


# ---------------------------------------------------------------- the backend
class DaskPairs:
    """Runs the engine's pair stages on a Dask cluster (see the module docstring).

    ``partitions`` row ranges per update (at least one per worker thread, more to
    bound each task's memory: a range holds about ``candidates / partitions``
    codes while it is deduplicated and scored). A key column of more than
    ``rows_per_block_task`` live rows is blocked in that many hash shares of its
    key values, one task each (a block is never split, so the pairs are the same).
    """

    def __init__(
        self,
        client: Any,
        *,
        partitions: int | None = None,
        cluster: Any = None,
        rows_per_block_task: int = ROWS_PER_BLOCK_TASK,
    ) -> None:
        self.client = client
        self._cluster = cluster
        self._partitions = partitions
        self._rows_per_task = rows_per_block_task

    @classmethod
    def connect(
        cls,
        address: str | None = None,
        *,
        workers: int = 2,
        threads_per_worker: int = 1,
        memory_limit: str | float = "auto",
        processes: bool = True,
        partitions: int | None = None,
        rows_per_block_task: int = ROWS_PER_BLOCK_TASK,
    ) -> DaskPairs:
        """A backend on the scheduler at ``address``, or on a new LocalCluster when None."""
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise DistributedError(f"dask.distributed is not installed: {exc}") from exc
        try:
            if address is None:
                # distributed's constructors carry no annotations
                cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers,
                    threads_per_worker=threads_per_worker,
                    memory_limit=memory_limit,
                    processes=processes,
                    dashboard_address="127.0.0.1:0",  # a free loopback port, never 8787
                )
                client = Client(cluster)  # type: ignore[no-untyped-call]
                return cls(
                    client,
                    partitions=partitions,
                    cluster=cluster,
                    rows_per_block_task=rows_per_block_task,
                )
            remote = Client(address, timeout="30s")  # type: ignore[no-untyped-call]
            return cls(remote, partitions=partitions, rows_per_block_task=rows_per_block_task)
        except (OSError, TimeoutError) as exc:
            where = address or "a LocalCluster"
            raise DistributedError(f"cannot reach the Dask scheduler at {where}: {exc}") from exc

    def close(self) -> None:
        """Close the client (and the LocalCluster this backend started)."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskPairs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def partitions(self, n_pairs_hint: int = 0) -> int:
        """Row ranges per update: the configured number, else two per worker thread."""
        if self._partitions:
            return self._partitions
        threads = sum(self.client.nthreads().values()) or 1
        return 2 * threads

    def _gather(self, futures: Sequence[Any]) -> list[Any]:
        from distributed import KilledWorker

        try:
            return list(self.client.gather(list(futures)))
        except KilledWorker as exc:
            # a worker died under the task (over its memory limit, most often)
            raise DistributedError(
                f"a Dask worker died running {exc.task}: raise its memory limit or "
                f"dask_partitions ({exc})"
            ) from exc
        except (OSError, TimeoutError, MemoryError) as exc:
            raise DistributedError(f"a Dask task failed: {exc}") from exc

    # ------------------------------------------------------------ stages
    def candidates(
        self,
        specs: Iterable[BlockSpec],
        is_new: npt.NDArray[np.bool_],
        alive: npt.NDArray[np.bool_],
        n: int,
    ) -> Candidates:
        """Distinct codes of every spec's block pairs, left on the workers by row range."""
        client, parts = self.client, self.partitions()
        flags = client.scatter([is_new, alive], broadcast=True, hash=False)

        def sent(col: U64 | None) -> Any:
            return None if col is None else client.scatter(col, hash=False)

        shares = max(1, -(-int(alive.sum()) // self._rows_per_task))
        keyed = []
        for s in specs:
            key, within = sent(s.key), sent(s.within)
            keyed += [
                client.submit(
                    _block_task, key, within, s.window, *flags, n, parts, h, shares, pure=False
                )
                for h in range(shares)
            ]
        pieces = [
            [client.submit(operator.getitem, k, p, pure=False) for k in keyed] for p in range(parts)
        ]
        merged = [client.submit(_merge_task, *row, pure=False) for row in pieces]
        sizes = self._gather([client.submit(len, m, pure=False) for m in merged])
        del keyed, pieces, flags
        return Candidates(merged, int(sum(sizes)), n)

    def send(self, f: Features | U64) -> Any:
        """``f`` copied to every worker, for the stages of one update that take features
        (or, for :meth:`dice_above` alone, the address filters).

        At 10M records the features are over a gigabyte: sent once a stage, the
        second copy alone held the driver 17 s while the workers waited.
        """
        return self.client.scatter(f, broadcast=True, hash=False)

    def pattern_counts(self, c: Candidates, sent: Any) -> F64:
        """Histogram of comparison patterns over every candidate (summed over ranges).

        ``sent``: the features as :meth:`send` returned them. The patterns stay on
        the workers with ``c`` (``c.patterns``), for :meth:`score_above`.
        """
        client = self.client
        c.patterns = [client.submit(_patterns_task, sent, p, c.n, pure=False) for p in c.parts]
        counts = self._gather([client.submit(pattern_histogram, p, pure=False) for p in c.patterns])
        total: F64 = np.sum(counts, axis=0)
        return total

    def score_above(
        self, c: Candidates, sent: Any, model: MatchModel, floor: float
    ) -> tuple[I64, I64, PairScores]:
        """The candidates scoring at least ``floor``, in code order (as the in-process engine).

        ``sent``: the features as :meth:`send` returned them. Filters by the patterns
        :meth:`pattern_counts` left on the workers when ``c`` has them.
        """
        client = self.client
        patterns = c.patterns or [None] * len(c.parts)
        got = self._gather(
            [
                client.submit(_score_task, sent, p, c.n, model, floor, q, pure=False)
                for p, q in zip(c.parts, patterns, strict=True)
            ]
        )
        return (
            np.concatenate([g[0] for g in got]),
            np.concatenate([g[1] for g in got]),
            _concat([g[2] for g in got]),
        )

    def dice_above(self, c: Candidates, sent: Any, threshold: float) -> tuple[I64, I64, F64]:
        """The candidates whose address filters' Dice is at least ``threshold``, in code order.

        ``sent``: the features, or the address filters alone, as :meth:`send` returned them.
        """
        client = self.client
        got = self._gather(
            [client.submit(_dice_task, sent, p, c.n, threshold, pure=False) for p in c.parts]
        )
        return (
            np.concatenate([g[0] for g in got]),
            np.concatenate([g[1] for g in got]),
            np.concatenate([g[2] for g in got]),
        )
