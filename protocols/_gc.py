"""The cyclic garbage collector paused over a pass that builds millions of objects.

Python's cyclic collector runs after every so many allocations and, once the
heap is large, rescans every container it holds: a linkage or an assessment that
builds and keeps millions of small lists, sets and tuples pays for that again and
again (about 15% of a million-record link's CPU). None of these passes makes
reference cycles, so nothing is lost by collecting only when the pass is over.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector inside the block; restore its state on the way out.

    Nested use is safe: only the outermost block that found it enabled re-enables it.
    Also a decorator (``@gc_paused()``): each call of the function runs paused.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
