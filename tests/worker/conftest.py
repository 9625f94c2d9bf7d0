"""Fixtures of the worker's tests."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from django_pgjobs.worker import completer as completer_module
from tests.helpers import second_connection


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The completer's monotonic clock, set by the test (``clock[0]``)."""
    now = [1000.0]
    monkeypatch.setattr(completer_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


@pytest.fixture
def conn() -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own, not Django's (as the worker's loop has one)."""
    made = second_connection()
    yield made
    made.close()
