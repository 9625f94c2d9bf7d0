"""How a listening connection is tried: bounded connects, further and further apart."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connections

from django_pgjobs import database
from django_pgjobs.listening import RETRY_MAX_SECONDS, RETRY_SECONDS, retry_delay


def test_tries_double_their_pause_up_to_a_minute() -> None:
    assert [retry_delay(f) for f in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert (RETRY_SECONDS, RETRY_MAX_SECONDS) == (5, 60)


def test_a_path_dead_for_days_is_still_tried_once_a_minute() -> None:
    assert retry_delay(100_000) == RETRY_MAX_SECONDS


@pytest.fixture
def connected(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The parameters connect() hands psycopg, without connecting."""
    given: dict[str, Any] = {}

    class Unconnected:  # what connect() keeps a weak reference to, as to a connection
        pass

    def connect(**params: Any) -> Unconnected:
        given.update(params)
        return Unconnected()

    monkeypatch.setattr(psycopg, "connect", connect)
    return given


@pytest.mark.parametrize(
    ("own", "expected"), [(None, 3), ("0", 3), (0, 3), ("10", 3), (2, 2), ("2", 2), ("x", 3)]
)
def test_a_listening_connect_is_bounded_unless_the_alias_sets_less(
    monkeypatch: pytest.MonkeyPatch, connected: dict[str, Any], own: Any, expected: int
) -> None:
    options = connections["pooled"].settings_dict["OPTIONS"]
    if own is not None:
        monkeypatch.setitem(options, "connect_timeout", own)
    database.connect("pooled", application_name="pgjobs listen x", connect_timeout=3)
    assert connected["connect_timeout"] == expected


def test_other_connections_keep_the_alias_own_connect_timeout(connected: dict[str, Any]) -> None:
    database.connect("pooled", application_name="pgjobs worker x")
    assert "connect_timeout" not in connected
