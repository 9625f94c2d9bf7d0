"""uuid_array(), the uuid[] literal a batch's ids and lease tokens are sent as."""

from __future__ import annotations

import uuid

import pytest

from django_pgjobs.queries.base import uuid_array

A, B = uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize(
    "values",
    [
        [],
        [A],
        [A, B, A],  # not repeated: the value before differs
        [A, A, A, B, B],  # the same object repeated: written out once, placed each time
        [A, uuid.UUID(A.hex), A],  # equal values, other objects
    ],
    ids=["empty", "one", "alternating", "repeated", "equal objects"],
)
def test_each_value_in_its_place(values: list[uuid.UUID]) -> None:
    assert uuid_array(values) == "{" + ",".join(v.hex for v in values) + "}"


def test_it_reads_a_generator_once() -> None:
    assert uuid_array(v for v in (A, A, B)) == "{" + f"{A.hex},{A.hex},{B.hex}" + "}"
