"""``pgjobs status``'s connection counts: each application_name to its role, the server's
limits, and what a role without pg_read_all_stats still counts right. (Real worker and scheduler
processes counted: tests/reliability/test_connection_budget.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs.observability.connections import ConnectionCounts, connection_counts
from tests.helpers import database_conninfo, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Names and the role each counts as; near misses of ours are the application's.
NAMES = {
    "pgjobs worker w1": "loops",
    "pgjobs worker host-1-ab12cd": "loops",
    "pgjobs handler w1": "handlers",
    "pgjobs scheduler": "schedulers",
    "pgjobs scheduler w1": "schedulers",
    "pgjobs wait": "waits",
    "pgjobs listen w1": "listeners",
    "pgjobs listen scheduler w1": "listeners",
    "pgjobs listen scheduler": "listeners",
    "pgjobs listener": "other",
    "pgjobs workers": "other",
    "pgjobs schedulerx": "other",
    "pgjobs waiting": "other",
    "": "other",
    "psql": "other",
}
ROLES = ("loops", "handlers", "schedulers", "waits", "listeners", "other")


@pytest.fixture
def sessions() -> Iterator[list[psycopg.Connection[Any]]]:
    opened = [
        psycopg.connect(database_conninfo(), application_name=name, autocommit=True)
        for name in NAMES
    ]
    yield opened
    for conn in opened:
        conn.close()


def by_role(counts: ConnectionCounts) -> dict[str, int]:
    return {role: getattr(counts, role) for role in ROLES}


def expected() -> dict[str, int]:
    return {role: list(NAMES.values()).count(role) for role in ROLES}


def settled() -> ConnectionCounts | None:
    """The counts, once the sessions of an earlier test have left pg_stat_activity."""
    counts = connection_counts()
    return counts if by_role(counts) == expected() else None


def test_each_connection_counts_under_the_role_its_name_gives(
    sessions: list[psycopg.Connection[Any]],
) -> None:
    """The reader's own connection is not counted: only the sessions opened here are on the
    test database."""
    counts = wait_for(settled)
    assert counts is not None
    assert counts.database == connection.settings_dict["NAME"]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT current_setting('max_connections')::int, "
            "current_setting('superuser_reserved_connections')::int "
            "+ coalesce(current_setting('reserved_connections', true)::int, 0)"
        )
        assert (counts.max_connections, counts.reserved) == cur.fetchone()
    # The server's count has every database's connections, these among them.
    assert counts.server >= len(NAMES)
    assert counts.left == max(counts.max_connections - counts.reserved - counts.server, 0)


def test_a_role_without_pg_read_all_stats_counts_the_same(
    sessions: list[psycopg.Connection[Any]], limited_role: str
) -> None:
    """Such a role sees other roles' sessions without their backend_type: they are counted
    as clients all the same."""
    wait_for(settled)
    with connection.cursor() as cur:
        cur.execute(f"SET ROLE {limited_role}")
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND backend_type IS NULL "
            "AND pid <> pg_backend_pid()"
        )
        assert cur.fetchone()[0] == len(NAMES)  # hidden from it, indeed
    assert by_role(connection_counts()) == expected()
