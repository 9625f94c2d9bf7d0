"""Fixtures of the worker's tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from django_pgjobs.worker import completer as completer_module


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The completer's monotonic clock, set by the test (``clock[0]``)."""
    now = [1000.0]
    monkeypatch.setattr(completer_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now
