"""The commands' output when its reader goes away (``pgjobs list | head``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def reader_may_leave(stream: Any) -> Iterator[None]:
    """Stop quietly, with exit status 1, when stdout's reader has closed it, as Unix tools
    cut off by ``head`` do: no traceback, and none from Python flushing stdout at exit.
    ``stream``: the file the command writes to (``self.stdout._out``)."""
    try:
        yield
    except BrokenPipeError:
        # Only the process's own stdout (``stream``: what the command writes to), closed by its
        # reader; a stream a caller handed to call_command() is theirs, and so is its error.
        if stream is not sys.stdout:
            raise
        try:
            fileno = sys.stdout.fileno()
        except (OSError, ValueError):
            raise BrokenPipeError from None
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fileno)
        os.close(devnull)
        sys.exit(1)
