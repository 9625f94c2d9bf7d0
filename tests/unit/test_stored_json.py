"""Stored JSON Python cannot decode, read without raising (no database)."""

from __future__ import annotations

import pytest

from django_pgjobs.stored_json import EXCERPT_LENGTH, UndecodableJSON, decode_json

# What PostgreSQL hands back for '{"amount": 1e5000}'::jsonb: the number in full.
HUGE_NUMBER = '{"amount": 1' + "0" * 5000 + "}"
DEEP = "[" * 3000 + "]" * 3000


def test_json_python_can_decode_comes_back_as_usual() -> None:
    assert decode_json('{"a": [1, 2.5, null, "x"]}') == {"a": [1, 2.5, None, "x"]}
    assert not isinstance(decode_json('"text"'), UndecodableJSON)


@pytest.mark.parametrize(
    ("stored", "error"),
    [
        (HUGE_NUMBER, "ValueError: a number has more digits than Python converts (4,300)"),
        (DEEP, "RecursionError: nested deeper than Python's recursion limit"),
    ],
)
def test_json_python_cannot_decode_comes_back_as_a_stand_in_saying_why(
    stored: str, error: str
) -> None:
    value = decode_json(stored)
    assert isinstance(value, UndecodableJSON)
    assert value.error.startswith(error)
    assert value.length == len(stored)
    assert value.startswith(f"(cannot be decoded: {value.error})\n")
    # The start of the stored text, not all of it.
    assert stored[:EXCERPT_LENGTH] + "…" in value
    assert f"its first {EXCERPT_LENGTH:,} of {len(stored):,} characters" in value
    assert len(value) < EXCERPT_LENGTH + 500


def test_a_short_undecodable_text_is_shown_in_full() -> None:
    value = UndecodableJSON('{"n": 1}', "ValueError: made up")
    assert value == (
        '(cannot be decoded: ValueError: made up)\nThe stored JSON text, in full:\n{"n": 1}'
    )
