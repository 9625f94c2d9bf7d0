"""The commands' output: columns as wide as what they show, and what happens when its reader goes
away (``pgjobs list | head``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django_pgjobs.observability.display import printable


def aligned(rows: Sequence[Sequence[str]], gap: str = "  ") -> list[str]:
    """``rows`` (of as many cells each; a header first, say) as lines whose columns line up:
    each column but the last padded to its widest cell as printed, escapes included (a stored
    ``\\n`` takes two characters). Ids and names are the application's, up to 200 characters:
    a fixed width either wastes the line or lets a long one push its row out of line."""
    shown = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(*shown, strict=True)]
    return [
        gap.join([*(c.ljust(width) for c, width in zip(row[:-1], widths, strict=False)), row[-1]])
        for row in shown
    ]


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
