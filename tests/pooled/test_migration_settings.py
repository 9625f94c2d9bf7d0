"""Migrations that build indexes CONCURRENTLY (0017, 0021) set ``lock_timeout`` for the session,
since such a build cannot run in a transaction. Through a transaction pooler that setting could
stay on a server session another client gets next: there they leave it alone."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "pooled"]),
    pytest.mark.usefixtures("pgbouncer"),
]

_0017 = importlib.import_module("django_pgjobs.migrations.0017_flow_control")
INDEX = "pgjobs_test_concurrently"


@pytest.fixture
def dropped() -> Iterator[None]:
    yield
    with connections["default"].cursor() as cur:
        cur.execute(f"DROP INDEX IF EXISTS {INDEX}")


def built_on(alias: str) -> list[str]:
    """Builds an index as the migrations do, through ``alias``: the statements it sent."""
    sent: list[str] = []

    def record(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        sent.append(sql)
        return execute(sql, *args)

    connection = connections[alias]
    with connection.execute_wrapper(record), connection.schema_editor(atomic=False) as editor:
        _0017._concurrently(
            editor,
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON pgjobs_job_queue (queue)",
            indexes=(INDEX,),
        )
    with connections["default"].cursor() as cur:
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [INDEX])
        assert cur.fetchone() == (True,)
    return sent


@pytest.mark.usefixtures("dropped")
def test_through_the_pooler_the_build_sets_nothing_for_the_session() -> None:
    assert not [sql for sql in built_on("pooled") if "lock_timeout" in sql]


@pytest.mark.usefixtures("dropped")
def test_straight_to_postgresql_the_build_waits_under_lock_timeout() -> None:
    assert [sql for sql in built_on("default") if "set_config('lock_timeout'" in sql]
