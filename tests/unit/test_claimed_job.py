"""claimed_job(), the worker's fast way to make a ClaimedJob, makes the constructor's job."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from django_pgjobs.queries.base import ClaimedJob, claimed_job

VALUES = (
    uuid.uuid4(), "app.send", {"to": "a@example.com"}, "mail", 5, 2, 3,
    datetime(2026, 12, 5, tzinfo=UTC), uuid.uuid4(), "customer-7", 30.0, 60.0, 41,
    '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}', 0.002, 17.5,
    17.56, datetime(2026, 12, 5, 0, 0, 0, 56000, tzinfo=UTC),
)  # fmt: skip


def test_it_is_the_constructors_job_field_for_field() -> None:
    fast, slow = claimed_job(VALUES), ClaimedJob(*VALUES)
    assert fast == slow
    assert dataclasses.astuple(fast) == VALUES
    assert fast.token == (VALUES[0], VALUES[8])


def test_it_stays_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        claimed_job(VALUES).priority = 9  # type: ignore[misc]


@pytest.mark.parametrize("values", [VALUES[:-1], (*VALUES, None)], ids=["short", "long"])
def test_a_value_too_many_or_too_few_is_an_error(values: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="zip"):
        claimed_job(values)
