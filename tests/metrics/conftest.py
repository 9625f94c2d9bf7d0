from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_pgjobs.metrics.collector import forget_cached


@pytest.fixture(autouse=True)
def fresh_figures() -> Iterator[None]:
    """Each test reads the database itself: no figures cached by the test before it."""
    forget_cached()
    yield
    forget_cached()
