"""PostgreSQL health on a real server: counts of a table with known dead rows, the estimate of
its free space, the session that holds back vacuum, and the warnings each threshold gives."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue_many
from django_pgjobs.models import Job
from django_pgjobs.observability.health import Health, TableHealth, database_health, pgjobs_tables
from tests.helpers import besides_autovacuum, require_prepared_transactions, second_connection
from tests.observability.conftest import flush_statistics

pytestmark = pytest.mark.django_db(transaction=True)


def table(health: Health, name: str) -> TableHealth:
    (found,) = [t for t in health.tables if t.name == name]
    return found


def sql(statement: str) -> None:
    with connection.cursor() as cur:
        cur.execute(statement)


def test_every_table_of_the_app_is_reported() -> None:
    names = [t.name for t in database_health().tables]
    assert names == pgjobs_tables()
    assert {"pgjobs_job_queue", "pgjobs_failed_jobs", "pgjobs_workers", "pgjobs_schedules",
            "pgjobs_queues", "pgjobs_queue_starts", "pgjobs_workflow_executions",
            "pgjobs_workflow_steps", "pgjobs_workflow_messages",
            "pgjobs_workflow_events"} <= set(names)  # fmt: skip


def test_live_and_dead_rows_are_counted_once_the_statistics_are_flushed(quiet_table: str) -> None:
    enqueue_many("test.record", [{}] * 300)
    doomed = list(Job.objects.values_list("id", flat=True)[:200])
    Job.objects.filter(id__in=doomed).delete()
    flush_statistics()
    found = table(database_health(), quiet_table)
    assert (found.live_rows, found.dead_rows) == (100, 200)
    assert found.dead_ratio == pytest.approx(2 / 3)
    assert found.table_bytes > 0 and found.index_bytes > 0
    assert found.autovacuum_enabled is False


def test_vacuum_removes_the_dead_rows_and_is_recorded(quiet_table: str) -> None:
    enqueue_many("test.record", [{}] * 50)
    Job.objects.all().delete()
    flush_statistics()
    before = table(database_health(), quiet_table)
    assert before.dead_rows == 50
    sql(f"VACUUM {quiet_table}")
    found = table(database_health(), quiet_table)
    assert found.dead_rows == 0
    # An earlier test of the run may have vacuumed the table too: this vacuum is a later one.
    assert found.last_vacuum is not None and found.vacuumed_at == found.last_vacuum
    assert before.last_vacuum is None or found.last_vacuum > before.last_vacuum


@override_settings(PGJOBS={"HEALTH": {"DEAD_ROWS": 200, "DEAD_RATIO": 0.6}})
def test_dead_rows_warn_past_both_thresholds_and_say_why_autovacuum_left_them(
    quiet_table: str,
) -> None:
    enqueue_many("test.record", [{}] * 300)
    Job.objects.filter(id__in=list(Job.objects.values_list("id", flat=True)[:200])).delete()
    flush_statistics()
    health = database_health()
    (warning,) = [w for w in health.warnings if w.kind == "dead_rows"]
    assert warning.subject == quiet_table
    assert warning.message == f"{quiet_table} has 200 dead rows (67% of its rows)"
    if health.autovacuum:
        assert f"ALTER TABLE {quiet_table} RESET (autovacuum_enabled)" in warning.action
    else:  # a server with autovacuum off (some CI images) is told first
        assert warning.action.startswith("autovacuum is off on this server")
    with override_settings(PGJOBS={"HEALTH": {"DEAD_ROWS": 201}}):
        assert not [w for w in database_health().warnings if w.kind == "dead_rows"]
    with override_settings(PGJOBS={"HEALTH": {"DEAD_ROWS": 0, "DEAD_RATIO": 0.7}}):
        assert not [w for w in database_health().warnings if w.kind == "dead_rows"]


def test_an_open_transaction_is_the_xmin_horizon_and_keeps_vacuum_from_removing_rows(
    quiet_table: str, holder: psycopg.Connection[Any]
) -> None:
    enqueue_many("test.record", [{}] * 40)
    Job.objects.all().delete()
    sql(f"VACUUM {quiet_table}")
    health = database_health()
    # Deleted after the holder took its transaction ID: vacuum had to leave them.
    assert table(health, quiet_table).dead_rows == 40
    horizon = health.horizon
    assert horizon is not None
    assert (horizon.kind, horizon.pid) == ("session", holder.info.backend_pid)
    assert (horizon.state, horizon.application) == ("idle in transaction", "health-test")
    assert horizon.query == "SELECT txid_current()"
    assert horizon.seconds is not None and horizon.seconds >= 0
    assert horizon.xmin_age >= 1 and not horizon.hidden
    assert health.sees_all_sessions
    # Held for less than the default 300 s and a million transactions: listed, not warned of.
    assert not [w for w in health.warnings if w.kind == "xmin_horizon"]


def test_the_horizon_warns_past_its_age_with_the_line_that_ends_it(
    holder: psycopg.Connection[Any],
) -> None:
    pid = holder.info.backend_pid
    with override_settings(PGJOBS={"HEALTH": {"XMIN_AGE_SECONDS": 0}}):
        health = database_health()
    (warning,) = [w for w in health.warnings if w.kind == "xmin_horizon"]
    assert warning.subject == f"pid {pid}"
    assert warning.message.startswith("a transaction open for 0:00:")
    assert warning.message.endswith(
        f"in pid {pid} (user {current_user()!r}, app 'health-test', idle in transaction) "
        f"holds back vacuum, {health.horizon.xmin_age:,} transactions behind"  # type: ignore[union-attr]
    )
    assert warning.action == (
        f"end it (SELECT pg_terminate_backend({pid})) and set "
        "idle_in_transaction_session_timeout so that a forgotten transaction ends by itself"
    )
    holder.rollback()  # the transaction ends: nothing holds the horizon any more
    with override_settings(PGJOBS={"HEALTH": {"XMIN_AGE_SECONDS": 0}}):
        health = database_health()
    assert health.horizon is None and besides_autovacuum(health.warnings) == []


def test_dead_rows_held_by_the_horizon_point_at_the_holder(
    quiet_table: str, holder: psycopg.Connection[Any]
) -> None:
    enqueue_many("test.record", [{}] * 40)
    Job.objects.all().delete()
    sql(f"VACUUM {quiet_table}")
    thresholds = {"XMIN_AGE_TRANSACTIONS": 0, "DEAD_ROWS": 40, "DEAD_RATIO": 1}
    with override_settings(PGJOBS={"HEALTH": thresholds}):
        warnings = besides_autovacuum(database_health().warnings)
    assert [w.kind for w in warnings] == ["xmin_horizon", "dead_rows"]
    pid = holder.info.backend_pid
    assert warnings[1].action.startswith("vacuum at ")
    assert (
        f"left them: it ran after the session pid {pid} (user {current_user()!r}, app "
        "'health-test', idle in transaction, transaction open 0:00:"
    ) in warnings[1].action
    assert f"end it (SELECT pg_terminate_backend({pid}))" in warnings[1].action


def test_without_pg_read_all_stats_a_holder_comes_with_its_pid_and_age_only(
    holder: psycopg.Connection[Any], limited_role: str
) -> None:
    holder.execute("SELECT 'secret' AS token")
    sql(f"SET ROLE {limited_role}")
    with override_settings(PGJOBS={"HEALTH": {"XMIN_AGE_TRANSACTIONS": 0}}):
        health = database_health()
    sql("RESET ROLE")
    assert not health.sees_all_sessions
    horizon = health.horizon
    assert horizon is not None and horizon.pid == holder.info.backend_pid
    assert horizon.hidden and horizon.user == current_user()
    assert (horizon.state, horizon.seconds, horizon.query) == (None, None, None)
    (warning,) = [w for w in health.warnings if w.kind == "xmin_horizon"]
    assert "hidden from this role" in warning.message
    assert "pg_read_all_stats" in warning.action
    assert f"pg_terminate_backend({holder.info.backend_pid})" in warning.action


def test_a_prepared_transaction_holds_the_horizon() -> None:
    require_prepared_transactions()
    preparing = second_connection(autocommit=False)
    preparing.execute("SELECT txid_current()")
    preparing.execute("PREPARE TRANSACTION 'pgjobs-health-''test'")
    preparing.close()
    try:
        with override_settings(PGJOBS={"HEALTH": {"XMIN_AGE_SECONDS": 0}}):
            health = database_health()
    finally:
        with second_connection() as conn:
            conn.execute("ROLLBACK PREPARED 'pgjobs-health-''test'")
    horizon = health.horizon
    assert horizon is not None
    assert (horizon.kind, horizon.name, horizon.user) == (
        "prepared transaction",
        "pgjobs-health-'test",
        current_user(),
    )
    (warning,) = [w for w in health.warnings if w.kind == "xmin_horizon"]
    assert warning.action.endswith(
        "COMMIT PREPARED 'pgjobs-health-''test' or ROLLBACK PREPARED 'pgjobs-health-''test'"
    )


def current_user() -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT current_user")
        return str(cur.fetchone()[0])


def test_free_space_is_estimated_from_the_statistics(quiet_table: str) -> None:
    enqueue_many("test.record", [{"n": n} for n in range(8000)])
    assert table(database_health(), quiet_table).bloat_bytes is None  # never analysed
    sql(f"ANALYZE {quiet_table}")
    packed = table(database_health(), quiet_table)
    assert packed.heap_bytes >= 100 * 8192  # large enough for the estimate to mean something
    assert packed.bloat_ratio is not None and packed.bloat_ratio < 0.1
    # Nine rows in ten deleted from every page: vacuum frees the space but cannot shorten the
    # table (each page keeps a row), so the heap is about 90% free space.
    sql(f"DELETE FROM {quiet_table} WHERE (ctid::text::point)[1]::int % 10 <> 0")
    sql(f"VACUUM ANALYZE {quiet_table}")
    emptied = table(database_health(), quiet_table)
    assert emptied.heap_bytes == packed.heap_bytes
    assert emptied.bloat_ratio is not None and 0.8 < emptied.bloat_ratio < 0.95
