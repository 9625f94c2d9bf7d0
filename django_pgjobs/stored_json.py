"""JSON read back from the database, decoded without ever raising.

PostgreSQL's ``jsonb`` accepts values Python's ``json`` module cannot decode: a number with more
digits than Python converts to an ``int`` (``1e5000`` is stored as 5,001 digits; Python stops at
4,300), nesting deeper than the interpreter's recursion limit. A row written by SQL or another
language is a first-class producer, so such a value must not crash whatever reads it (a worker
after its claim committed, an admin page, ``pgjobs list``): it decodes to an
:class:`UndecodableJSON` standing in for it, and each reader decides what that means (a job with
one is dead-lettered at once; the admin shows the text).
"""

from __future__ import annotations

import json
import sys
from typing import Any

# How much of the stored text an UndecodableJSON keeps: enough to recognise the row, never the
# whole of a value that may be megabytes.
EXCERPT_LENGTH = 1000


class UndecodableJSON(str):
    """Stands in for a stored JSON value Python cannot decode.

    As text it says so, with the reason and the start of the stored text (what a page or a
    listing shows); ``error`` is the reason alone, ``length`` the stored text's length. It is
    never written back: the model fields refuse it (see :mod:`django_pgjobs.models.fields`).
    """

    error: str
    length: int

    def __new__(cls, stored: str, error: str) -> UndecodableJSON:
        excerpt = stored[:EXCERPT_LENGTH]
        if len(excerpt) < len(stored):
            shown, excerpt = (
                f"its first {len(excerpt):,} of {len(stored):,} characters",
                excerpt + "…",
            )
        else:
            shown = "in full"
        text = f"(cannot be decoded: {error})\nThe stored JSON text, {shown}:\n{excerpt}"
        value = super().__new__(cls, text)
        value.error = error
        value.length = len(stored)
        return value


def decode_json(text: str) -> Any:
    """``json.loads(text)``, or an :class:`UndecodableJSON` if Python cannot decode it."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: an int past sys.get_int_max_str_digits() (JSONDecodeError cannot happen:
        # PostgreSQL only hands out valid JSON). RecursionError: nesting past the limit.
        return UndecodableJSON(text, why_undecodable(exc))


def why_undecodable(exc: ValueError | RecursionError) -> str:
    """The reason in our words: Python's own message for the digit limit advises raising it
    with sys.set_int_max_str_digits(), which is not the fix here (correct the row, then requeue)."""
    if isinstance(exc, RecursionError):
        return "RecursionError: nested deeper than Python's recursion limit"
    if "int_max_str_digits" in str(exc) or "Exceeds the limit" in str(exc):
        return (
            "ValueError: a number has more digits than Python converts "
            f"({sys.get_int_max_str_digits():,})"
        )
    return f"{type(exc).__name__}: {exc}"
