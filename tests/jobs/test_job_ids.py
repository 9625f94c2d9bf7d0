"""Every job gets a time-ordered id (version 7), however it was enqueued, and the jobs of one
batch, due at the same time, are claimed in the order they were enqueued."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection

from django_pgjobs import enqueue, enqueue_many, queries

pytestmark = pytest.mark.django_db(transaction=True)


def _ids_in_enqueue_order() -> list[uuid.UUID]:
    with connection.cursor() as cur:
        cur.execute("SELECT id FROM pgjobs_job_queue ORDER BY seq")
        return [row[0] for row in cur.fetchall()]


def test_a_row_inserted_without_an_id_gets_one_of_version_7_from_the_database() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name) SELECT 'test.record' "
            "FROM generate_series(1, 500)"
        )
        cur.execute("SELECT pgjobs_enqueue('test.record')")
        cur.execute("SELECT (extract(epoch FROM now()) * 1000)::bigint")
        now_ms = cur.fetchone()[0]
    made = _ids_in_enqueue_order()
    assert {i.version for i in made} == {7}
    assert {i.variant for i in made} == {uuid.RFC_4122}
    stamps = [i.int >> 80 for i in made]  # milliseconds: never going back within a statement
    assert stamps == sorted(stamps)
    assert abs(stamps[-1] - now_ms) < 60_000


def test_the_librarys_ids_are_of_version_7_and_grow() -> None:
    first = enqueue("test.record")
    batch = enqueue_many("test.record", [{"n": n} for n in range(50)])
    assert [first, *batch] == sorted([first, *batch])
    assert {i.version for i in [first, *batch]} == {7}


def test_a_batch_due_at_once_is_claimed_in_enqueue_order() -> None:
    enqueued = enqueue_many("test.record", [{"n": n} for n in range(200)])
    with connection.cursor() as cur:
        claimed = queries.claim_jobs(
            cur, worker_id="w", limit=200, lease_seconds=60, queues=None, job_names=None
        )
    assert [job.id for job in claimed] == enqueued
    assert [job.payload["n"] for job in claimed] == list(range(200))
