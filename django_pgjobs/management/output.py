"""The commands' output when its reader goes away (``pgjobs list | head``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def reader_may_leave() -> Iterator[None]:
    """Stop quietly, with exit status 1, when stdout's reader has closed it, as Unix tools
    cut off by ``head`` do: no traceback, and none from Python flushing stdout at exit."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
