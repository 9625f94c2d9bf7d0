"""Jobs enqueued from SQL: a plain INSERT or pgjobs_enqueue(), with the database's own guards."""

from __future__ import annotations

from datetime import timedelta

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


def test_sql_function_takes_a_partition_key_and_a_timeout_by_name() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pgjobs_enqueue('test.record', queue => 'ledger', "
            "partition_key => 'account:42', timeout => interval '90 seconds')"
        )
        job_id = cur.fetchone()[0]
    job = Job.objects.get(id=job_id)
    assert (job.queue, job.partition_key, job.timeout) == (
        "ledger", "account:42", timedelta(seconds=90),
    )  # fmt: skip


def test_calls_written_for_the_old_function_still_work() -> None:
    """Positional calls of every length of the seven-argument function resolve to the new one
    (no overload makes them ambiguous), with no partition and no timeout."""
    with connection.cursor() as cur:
        cur.execute("SELECT pgjobs_enqueue('test.record')")
        cur.execute("SELECT pgjobs_enqueue('test.record', '{\"n\": 2}', 'q', 5)")
        cur.execute("SELECT pgjobs_enqueue('test.record', '{}', 'q', 0, now(), 4, 'k7')")
        cur.execute("SELECT count(*) FROM pg_proc WHERE proname = 'pgjobs_enqueue'")
        assert cur.fetchone()[0] == 1
    jobs = Job.objects.order_by("created_at", "seq")
    assert [j.max_attempts for j in jobs][-1] == 4 and jobs.last().key == "k7"  # type: ignore[union-attr]
    assert {(j.partition_key, j.timeout) for j in jobs} == {(None, None)}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("partition_key => repeat('k', 501)", "partition_key is 501 characters long"),
        ("partition_key => ''", "partition_key is empty"),  # rev27: as enqueue() refuses it
        ("timeout => interval '0'", "timeout 00:00:00 must be > 0"),
        ("timeout => interval '-5 minutes'", "must be > 0 and at most 366 days"),
        ("timeout => interval '367 days'", "must be > 0 and at most 366 days"),
    ],
)
def test_sql_function_refuses_what_enqueue_refuses(arguments: str, message: str) -> None:
    from django.db import DataError

    with pytest.raises(DataError, match=message) as refused, connection.cursor() as cur:
        cur.execute(f"SELECT pgjobs_enqueue('test.record', {arguments})")
    assert refused.value.__cause__.sqlstate == "22023"  # type: ignore[union-attr]
    assert not Job.objects.exists()
