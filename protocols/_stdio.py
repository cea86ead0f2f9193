"""Command-line output that behaves in a pipe: ``report X | head`` ends quietly.

When the reader of standard output goes away (``head`` has read enough),
writing raises ``BrokenPipeError``; Python would then print a traceback and
fail again flushing at exit. :func:`pipe_safe` wraps a console script's
``main`` so it exits with status 141 (128 + SIGPIPE, as a shell reports it)
and says nothing, like other Unix tools.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec

__all__ = ["pipe_safe"]

_P = ParamSpec("_P")
EXIT_BROKEN_PIPE = 141


def pipe_safe(main: Callable[_P, int]) -> Callable[_P, int]:
    """``main``, exiting 141 without a traceback when standard output is closed."""

    @functools.wraps(main)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            # Point stdout at /dev/null so the interpreter's own flush at exit
            # does not raise again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE

    return run
