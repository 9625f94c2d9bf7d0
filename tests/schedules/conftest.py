from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_pgjobs.schedules.declarations import forget


@pytest.fixture
def declared() -> Iterator[list[str]]:
    """Names of code schedules a test declares; forgotten afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        forget(name)
