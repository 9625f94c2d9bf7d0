"""A statement in psycopg's ``%(name)s`` style made into the protocol's, for the statements the
worker sends without psycopg's cursor (queries.sent, queries.claim_behind)."""

from __future__ import annotations

import pytest

from django_pgjobs.queries.sent import numbered, placeholders


def test_placeholders_are_numbered_in_the_order_given() -> None:
    sql = "SELECT %(b)s, %(a)s, %(b)s"
    assert numbered(sql, ["a", "b"]) == b"SELECT $2, $1, $2"


def test_a_doubled_percent_is_one() -> None:
    assert numbered("SELECT 5 %% 3, name LIKE 'x%%' AND %(a)s", ["a"]) == (
        b"SELECT 5 % 3, name LIKE 'x%' AND $1"
    )


def test_placeholders_are_listed_once_in_the_order_they_come() -> None:
    assert placeholders("SELECT %(b)s, 10 %% 3, %(a)s, %(b)s") == ["b", "a"]


def test_a_name_not_given_is_an_error() -> None:
    with pytest.raises(ValueError, match="'missing' is not in list"):
        numbered("SELECT %(missing)s", ["a"])
