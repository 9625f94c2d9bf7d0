"""The dead rows' advice and display: a session holding a snapshot, however young, is named as
the cause (not autovacuum); a small table's dead share is not shown as if it meant something."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.test import override_settings

from django_pgjobs import enqueue_many
from django_pgjobs.admin.health import health_context
from django_pgjobs.models import Job
from django_pgjobs.observability.display import local_time
from django_pgjobs.observability.health import database_health
from django_pgjobs.observability.health_report import health_report
from tests.helpers import second_connection
from tests.observability.conftest import flush_statistics
from tests.observability.test_health import sql

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def snapshot_holder() -> Iterator[psycopg.Connection[Any]]:
    """A session in a REPEATABLE READ transaction that ran one query: its snapshot (no
    transaction ID) keeps every row deleted after it, as a report or a long read does."""
    conn = second_connection(autocommit=False)
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT count(*) FROM pgjobs_job_queue")
    yield conn
    conn.close()


def dead_rows_advice() -> str:
    (warning,) = [w for w in database_health().warnings if w.kind == "dead_rows"]
    return warning.action


@override_settings(PGJOBS={"HEALTH": {"DEAD_ROWS": 40, "DEAD_RATIO": 1}})
def test_a_young_snapshot_is_named_as_why_dead_rows_stay_and_autovacuum_is_not_blamed(
    quiet_table: str, snapshot_holder: psycopg.Connection[Any]
) -> None:
    enqueue_many("test.record", [{}] * 40)
    Job.objects.all().delete()  # after the holder's snapshot: vacuum must leave them
    sql(f"VACUUM {quiet_table}")
    flush_statistics()
    health = database_health()
    pid = snapshot_holder.info.backend_pid
    (ours,) = [h for h in health.holders if h.pid == pid]
    assert ours.state == "idle in transaction" and ours.query_start is not None
    # What the advice names: the oldest holder, ours unless a session of another database
    # (another test run on this server) is what ours is held at.
    horizon = health.horizon
    assert horizon is not None and horizon.query_start is not None
    # Younger than the horizon's thresholds, ours has no warning of its own; the dead rows'
    # advice names the holder, with its state, age and query start, and says to end it. The
    # table's autovacuum is off (quiet_table), and that is not blamed.
    (dead,) = [w for w in health.warnings if w.kind == "dead_rows"]
    assert not [w for w in health.warnings if w.subject == f"pid {pid}"]
    assert f"pid {horizon.pid} (" in dead.action
    assert f", {horizon.state}, transaction open " in dead.action
    assert f"query started {local_time(horizon.query_start)})" in dead.action
    assert f"SELECT pg_terminate_backend({horizon.pid})" in dead.action
    assert "autovacuum" not in dead.action

    # Once it ends, nothing holds the horizon: the advice is about autovacuum again.
    snapshot_holder.rollback()
    enqueue_many("test.record", [{}] * 40)
    Job.objects.all().delete()
    flush_statistics()
    assert dead_rows_advice().startswith("autovacuum is off")


def job_table_line(lines: list[str], table: str) -> str:
    (line,) = [line for line in lines if line.startswith(f"{table} ")]
    return line


def test_a_small_table_s_dead_share_is_not_shown_and_the_report_says_why(
    quiet_table: str,
) -> None:
    enqueue_many("test.record", [{}] * 4)
    Job.objects.filter(id__in=list(Job.objects.values_list("id", flat=True)[:3])).delete()
    flush_statistics()
    health = database_health()  # the default DEAD_ROWS: 10,000
    assert not [w for w in health.warnings if w.kind == "dead_rows"]
    lines = [line for line, _ in health_report(health)]
    row = job_table_line(lines, quiet_table).split()
    assert row[1:4] == ["1", "3", "-"]
    assert any(line.startswith("dead %: shown from 10,000 dead rows") for line in lines)
    shown = health_context(health)
    (cells,) = [t for t in shown["tables"] if t["name"] == quiet_table]
    assert (cells["dead"], cells["dead_ratio"], cells["warns"]) == ("3", "-", False)
    assert "small table" in shown["small_tables_note"]

    with override_settings(PGJOBS={"HEALTH": {"DEAD_ROWS": 3, "DEAD_RATIO": 0.9}}):
        health = database_health()
    assert job_table_line([line for line, _ in health_report(health)], quiet_table).split()[
        1:4
    ] == ["1", "3", "75%"]
    assert not [w for w in health.warnings if w.kind == "dead_rows"]
