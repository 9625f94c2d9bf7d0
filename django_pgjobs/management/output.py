"""The commands' output: columns as wide as what they show, and what happens when its reader goes
away (``pgjobs list | head``)."""

from __future__ import annotations

import os
import sys
import unicodedata
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
    widths = [max(map(width_of, column)) for column in zip(*shown, strict=True)]
    return [
        gap.join([*map(_padded, row[:-1], widths), row[-1]])  # the last cell is not padded
        for row in shown
    ]


def _padded(cell: str, width: int) -> str:
    return cell + " " * (width - width_of(cell))


def width_of(text: str) -> int:
    """How many terminal columns ``text`` takes, as a terminal draws it: two for an East Asian
    wide or fullwidth character (a kanji, a fullwidth letter), none for a combining mark (an
    accent written after its letter), one for the rest. ``len()`` counted characters, so a
    Japanese workflow name pushed the columns after it out of line. Format characters take
    none either, but :func:`printable` has escaped them by now."""
    return sum(
        0
        if unicodedata.category(char) in ("Mn", "Me")
        else 2
        if unicodedata.east_asian_width(char) in ("W", "F")
        else 1
        for char in text
    )


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
