"""Every stored time is one Python can read back: ``pgjobs_enqueue()`` and a CHECK on every time
column refuse ``infinity``, ``-infinity`` and years outside 2..9000 from SQL (migration 0014).

Before, one such row broke the worker's claim after it committed, the dashboard, the admin,
the ``pgjobs`` command and the scheduler (tests/test_times_in_range_readers.py shows each
reader working beside a refused write).
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.apps import apps
from django.db import DataError, IntegrityError, connection, models, transaction

from django_pgjobs.jobs import validation
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")

OUT_OF_RANGE = ["-infinity", "infinity", "0500-01-01 BC", "0001-12-31 23:59:59.999999+00",
                "9000-01-01 00:00:00+00", "10000-01-01"]  # fmt: skip
ONE_MICROSECOND = timedelta(microseconds=1)


def sql(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else []


def enqueue_at(when: object) -> list[tuple[Any, ...]]:
    return sql("SELECT pgjobs_enqueue('test.record', scheduled_for => %s::timestamptz)", [when])


def test_the_migration_and_python_share_the_bounds() -> None:
    assert (_0014.EARLIEST_TIME, _0014.LATEST_TIME) == (
        validation.EARLIEST_TIME,
        validation.LATEST_TIME,
    )
    # The SQL text of the function and the CHECKs says the same: the edges are where Python's.
    enqueue_at(validation.EARLIEST_TIME)
    enqueue_at(validation.LATEST_TIME - ONE_MICROSECOND)
    for outside in (validation.EARLIEST_TIME - ONE_MICROSECOND, validation.LATEST_TIME):
        with pytest.raises(DataError, match="outside the supported range"), transaction.atomic():
            enqueue_at(outside)
        with pytest.raises(IntegrityError, match="pgjobs_job_scheduled_for_range"):
            sql(
                "INSERT INTO pgjobs_job_queue (job_name, scheduled_for) VALUES ('x', %s)", [outside]
            )
    assert Job.objects.count() == 2


@pytest.mark.parametrize("when", OUT_OF_RANGE)
def test_pgjobs_enqueue_refuses_a_time_python_cannot_read_back(when: str) -> None:
    with pytest.raises(DataError) as caught, transaction.atomic():
        enqueue_at(when)
    error = caught.value.__cause__
    assert isinstance(error, psycopg.Error)
    assert error.sqlstate == "22023"  # invalid_parameter_value, as for a reserved name
    assert "scheduled_for" in str(error) and "outside the supported range" in str(error)
    assert "0002-01-01 to 9000-01-01 (UTC)" in str(error)
    assert not Job.objects.exists()


def test_pgjobs_enqueue_without_a_time_still_means_now() -> None:
    job = Job.objects.get(id=enqueue_at(None)[0][0])
    assert job.scheduled_for <= job.created_at + timedelta(seconds=1)


# A minimal valid row of every table, written with SQL as another producer would.
ROWS = {
    "pgjobs_job_queue": "INSERT INTO pgjobs_job_queue (job_name) VALUES ('test.record')",
    "pgjobs_failed_jobs": "INSERT INTO pgjobs_failed_jobs (job_name) VALUES ('test.record')",
    "pgjobs_workers": "INSERT INTO pgjobs_workers (id) VALUES ('w1')",
    "pgjobs_schedules": "INSERT INTO pgjobs_schedules (name, cron, job_name) "
    "VALUES ('s1', '* * * * *', 'test.record')",
    "pgjobs_workflow_executions": "INSERT INTO pgjobs_workflow_executions "
    "(workflow_id, name, app_version) VALUES ('wf1', 'x', 'v1')",
    "pgjobs_workflow_steps": "INSERT INTO pgjobs_workflow_steps "
    "(workflow_id, step_index, step_name, status) VALUES ('wf1', 0, 's', 'waiting')",
    "pgjobs_workflow_messages": "INSERT INTO pgjobs_workflow_messages (workflow_id) VALUES ('wf1')",
    "pgjobs_workflow_events": "INSERT INTO pgjobs_workflow_events (workflow_id, key) "
    "VALUES ('wf1', 'k')",
    # Paused: the row's trigger keeps paused_at only for a paused queue (migration 0024).
    "pgjobs_queues": "INSERT INTO pgjobs_queues (name, paused) VALUES ('q1', true)",
    "pgjobs_queue_starts": "INSERT INTO pgjobs_queue_starts (queue, jobs) VALUES ('q1', 1)",
}


def time_columns() -> list[tuple[str, str]]:
    """(table, column) of every DateTimeField of every pgjobs model with a table."""
    found: list[tuple[str, str]] = []
    for model in apps.get_app_config("pgjobs").get_models():
        if model._meta.proxy:
            continue
        for field in model._meta.concrete_fields:
            if isinstance(field, models.DateTimeField):
                found.append((model._meta.db_table, str(field.column)))
    return found


def test_every_time_column_has_a_validated_range_check() -> None:
    checks = {
        (table, name): (validated, definition)
        for table, name, validated, definition in sql(
            "SELECT conrelid::regclass::text, conname, convalidated, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'c' AND conname LIKE 'pgjobs%%_range'"
        )
    }
    columns = time_columns()
    assert len(columns) == 29  # a new time column needs its CHECK (models.fields.times_in_range)
    for table, column in columns:
        named = [(v, d) for (t, n), (v, d) in checks.items() if t == table and column in d]
        assert named, f"{table}.{column} has no range CHECK"
        assert all(validated for validated, _ in named), f"{table}.{column} is NOT VALID"


@pytest.mark.parametrize(("table", "column"), time_columns())
@pytest.mark.parametrize("when", ["infinity", "-infinity", "10000-01-01", "0500-01-01 BC"])
def test_sql_cannot_write_a_time_python_cannot_read_back(
    table: str, column: str, when: str
) -> None:
    if table in ("pgjobs_workflow_steps", "pgjobs_workflow_messages", "pgjobs_workflow_events"):
        sql(ROWS["pgjobs_workflow_executions"])
    sql(ROWS[table])
    if (table, column) == ("pgjobs_schedules", "updated_at"):
        # An update cannot set it: the schedule's trigger writes now() (migration 0003).
        sql(f"UPDATE {table} SET {column} = %s::timestamptz", [when])
        assert sql(f"SELECT {column} < now() + interval '1 minute' FROM {table}") == [(True,)]
    else:
        with pytest.raises(IntegrityError, match=f"_{column}_range"), transaction.atomic():
            sql(f"UPDATE {table} SET {column} = %s::timestamptz", [when])
    sql(f"DELETE FROM {table}")
    with pytest.raises(IntegrityError, match=f"_{column}_range"), transaction.atomic():
        sql(_with_column(ROWS[table], column), [when])
    assert sql(f"SELECT count(*) FROM {table}") == [(0,)]


def _with_column(insert: str, column: str) -> str:
    """``INSERT INTO t (a, b) VALUES (x, y)`` with ``column`` set to the first parameter."""
    head, values = insert.split(") VALUES (", 1)
    return f"{head}, {column}) VALUES ({values[:-1]}, %s::timestamptz)"


def test_the_refusal_shows_the_time_in_utc_whatever_the_session_time_zone() -> None:
    sql("SET TIME ZONE 'Asia/Tokyo'")
    try:
        with pytest.raises(DataError) as caught, transaction.atomic():
            enqueue_at("9000-01-01 00:00:00+00")
    finally:
        sql("RESET TIME ZONE")
    assert "scheduled_for 9000-01-01 00:00:00 (UTC) is outside" in str(caught.value)
