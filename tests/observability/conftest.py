"""Fixtures for the health tests: a table autovacuum leaves alone, a role without privileges.
Each undoes what it did. (``holder``, a session holding the xmin horizon, is in tests/conftest.py:
the command and dashboard tests use it too.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

TABLE = "pgjobs_job_queue"


@pytest.fixture
def quiet_table() -> Iterator[str]:
    """The job table, emptied, with autovacuum off for it: autovacuum (or its analyze) running
    between a test's writes and its read would change the counts under it."""
    with connection.cursor() as cur:
        cur.execute(f"ALTER TABLE {TABLE} SET (autovacuum_enabled = off)")
        cur.execute(f"TRUNCATE {TABLE} CASCADE")
    flush_statistics()
    yield TABLE
    with connection.cursor() as cur:
        cur.execute(f"ALTER TABLE {TABLE} RESET (autovacuum_enabled)")


def flush_statistics() -> None:
    """Make this connection's counts visible to every session now: PostgreSQL 15+ flushes a
    backend's pending statistics at most once a second, or at once when asked, before it
    answers its next command."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")


@pytest.fixture
def limited_role() -> Iterator[str]:
    """A role that is neither superuser nor pg_read_all_stats; roles are per server, so its
    name carries the test database's."""
    name = f"pgjobs_health_{connection.settings_dict['NAME']}"
    with connection.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {name}")
        cur.execute(f"CREATE ROLE {name}")
    yield name
    with connection.cursor() as cur:
        cur.execute("RESET ROLE")
        cur.execute(f"DROP ROLE {name}")
