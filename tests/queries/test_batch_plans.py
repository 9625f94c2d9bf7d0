"""A batch of attempts is found by key: its cost follows the batch, not the running set.

The worker completes its finished attempts and renews its held ones in batches, each matched to
the rows by (id, lease token). Statistics taken while no job ran (before a burst, as on most
tables) make the partial indexes on running jobs look nearly empty; the planner then read every
running job of every worker, through one of them, to match a batch of ten. Counted in index
entries read (this transaction's own counts), never in time."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs.queries import complete_jobs, heartbeat, no_longer_held
from django_pgjobs.queries.base import Token
from django_pgjobs.queries.claim import claim_jobs
from tests.helpers import second_connection

pytestmark = pytest.mark.django_db(transaction=True)

RUNNING, BATCH = 2_000, 10


def running_jobs() -> list[Token]:
    """RUNNING jobs held by other workers, claimed after the statistics were taken (none
    running then); returns the attempts of one batch of them."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name) "
            "SELECT 'test.record' FROM generate_series(1, %s)",
            [RUNNING],
        )
        cur.execute("ANALYZE pgjobs_job_queue")
    conn = second_connection()
    try:
        claimed = claim_jobs(
            conn.cursor(), worker_id="others", limit=RUNNING, lease_seconds=60, queues=None,
            job_names=None,
        )  # fmt: skip
    finally:
        conn.close()
    assert len(claimed) == RUNNING
    return [job.token for job in claimed[:BATCH]]


def entries_read(conn: psycopg.Connection[Any]) -> int:
    """Index entries of pgjobs_job_queue this connection's transaction has read so far."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) FROM pg_index "
        "WHERE indrelid = 'pgjobs_job_queue'::regclass"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_completing_a_batch_reads_the_batch_not_every_running_job() -> None:
    batch = running_jobs()
    conn = second_connection(autocommit=False)
    try:
        completed = complete_jobs(conn.cursor(), tokens=batch, took=[0.01] * BATCH)
        read = entries_read(conn)
        conn.rollback()
    finally:
        conn.close()
    assert sorted(completed) == sorted(job_id for job_id, _ in batch)
    # Its key holds two entries an attempt (the claim made a new version of the row), read
    # to lock the attempt and to complete it.
    assert read <= 5 * BATCH, read


def test_renewing_a_batch_reads_the_batch_not_every_running_job() -> None:
    batch = running_jobs()
    worker = {"id": "w", "hostname": "h", "pid": 1, "queues": "[]", "concurrency": BATCH,
              "instance_token": str(uuid.uuid4())}  # fmt: skip
    conn = second_connection(autocommit=False)
    try:
        before = entries_read(conn)
        lost = heartbeat(conn.cursor(), worker=worker, tokens=batch, lease_seconds=60)
        read = entries_read(conn) - before
        conn.rollback()
    finally:
        conn.close()
    assert lost == []
    # A few entries an attempt: its key holds two (the claim made a new version of the row),
    # read to lock it, to check it still holds its job, and to renew it.
    assert read <= 8 * BATCH, read


def test_checking_a_batch_reads_the_batch_not_every_running_job() -> None:
    batch = running_jobs()
    conn = second_connection(autocommit=False)
    try:
        gone = no_longer_held(conn.cursor(), tokens=[(batch[0][0], uuid.uuid4()), *batch[1:]])
        read = entries_read(conn)
        conn.rollback()
    finally:
        conn.close()
    assert gone == [(batch[0][0], gone[0][1])] and gone[0][1] != batch[0][1]
    assert read <= 4 * BATCH, read


def test_a_batch_still_matches_only_the_attempts_it_names() -> None:
    """The key is only the way in: a stale token, or a job no longer running, matches nothing."""
    batch = running_jobs()
    (job_id, _), rest = batch[0], batch[1:]
    conn = second_connection()
    try:
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE pgjobs_job_queue SET status = 'cancelled', lease_token = NULL "
                "WHERE id = %s",
                [rest[0][0]],
            )
        stale: list[Token] = [(job_id, uuid.uuid4()), *rest]
        completed = complete_jobs(conn.cursor(), tokens=stale, took=[None] * BATCH)
    finally:
        conn.close()
    assert sorted(completed) == sorted(i for i, _ in rest[1:])
