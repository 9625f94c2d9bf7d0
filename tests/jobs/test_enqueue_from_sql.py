"""Jobs enqueued from SQL: a plain INSERT or pgjobs_enqueue(), with the database's own guards."""

from __future__ import annotations

import pytest
from django.db import connection

from django_pgjobs import get_job
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_raw_sql_insert_creates_a_runnable_job() -> None:
    with connection.cursor() as cur:
        cur.execute("INSERT INTO pgjobs_job_queue (job_name, payload) VALUES ('test.record', '{}')")
    job = Job.objects.get()
    assert (job.status, job.queue, job.attempt, job.max_attempts) == ("pending", "default", 0, 3)


def test_sql_function_enqueues_and_deduplicates_by_key() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pgjobs_enqueue('test.record', '{\"a\": 1}', queue => 'sql', job_key => 'k')"
        )
        first = cur.fetchone()[0]
        cur.execute("SELECT pgjobs_enqueue('test.record', '{\"a\": 2}', job_key => 'k')")
        assert cur.fetchone()[0] == first
    job = get_job(first)
    assert (job.queue, job.payload) == ("sql", {"a": 1})


def test_sql_function_pins_search_path() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT proconfig FROM pg_proc "
            "WHERE proname IN ('pgjobs_enqueue', 'pgjobs_notify_new_jobs')"
        )
        assert [r[0] for r in cur.fetchall()] == [["search_path=pg_catalog, pg_temp"]] * 2


def test_the_database_refuses_empty_job_names_from_sql() -> None:
    from django.db import IntegrityError

    with (
        pytest.raises(IntegrityError, match="pgjobs_job_names_not_empty"),
        connection.cursor() as cur,
    ):
        cur.execute("SELECT pgjobs_enqueue('')")
