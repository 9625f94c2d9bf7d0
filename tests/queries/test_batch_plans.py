"""A batch of attempts is found by key: its cost follows the batch, not the running set; and one
attempt's own writes read its row, not the running set.

The worker completes its finished attempts, renews its held ones and checks which it still holds
in batches, each matched to the rows by (id, lease token). Statistics taken while no job ran
(before a burst, as on most tables) make the partial indexes on running jobs look nearly empty;
the planner then read every running job of every worker, through one of them, to match a batch
of ten, or scanned the table for a larger one. Counted in rows and index entries read (this
transaction's own counts) and in how often a plan node runs, never in time."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs.queries import complete_jobs, heartbeat, no_longer_held
from django_pgjobs.queries.base import Token
from django_pgjobs.queries.claim import claim_jobs
from django_pgjobs.queries.lease import report_progress, save_metadata, snooze_job
from django_pgjobs.queries.outcomes import cancel_held_job, fail_job
from django_pgjobs.queries.workflow_steps import record_step
from tests.helpers import plan_nodes, second_connection

pytestmark = pytest.mark.django_db(transaction=True)

RUNNING = 5_000
BATCHES = [10, 250]


def running_jobs(batch: int) -> list[Token]:
    """RUNNING jobs held by other workers, claimed after the statistics were taken (none
    running then); returns the attempts of one batch of them."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name) "
            "SELECT 'test.record' FROM generate_series(1, %s)",
            [RUNNING],
        )
        cur.execute("ANALYZE pgjobs_job_queue")
    claimed = claimed_elsewhere(RUNNING)
    assert len(claimed) == RUNNING
    return [job.token for job in claimed[:batch]]


def claimed_elsewhere(limit: int) -> list[Any]:
    """Jobs claimed, and committed, on a connection of another worker's."""
    conn = second_connection()
    try:
        return claim_jobs(
            conn.cursor(), worker_id="others", limit=limit, lease_seconds=60, queues=None,
            job_names=None,
        )  # fmt: skip
    finally:
        conn.close()


def rows_read(conn: psycopg.Connection[Any], table: str = "pgjobs_job_queue") -> int:
    """Index entries and rows of sequential scans of ``table`` that this connection's
    transaction has read so far."""
    row = conn.execute(
        "SELECT pg_stat_get_xact_tuples_returned(%(t)s::regclass) + ("
        "  SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0) FROM pg_index"
        "  WHERE indrelid = %(t)s::regclass)",
        {"t": table},
    ).fetchone()
    assert row is not None
    return int(row[0])


def read_by(write: Callable[[Any], Any]) -> tuple[Any, int]:
    """What ``write`` (given a cursor) returns, and the rows and entries its statement read;
    rolled back."""
    conn = second_connection(autocommit=False)
    try:
        before = rows_read(conn)
        result = write(conn.cursor())
        read = rows_read(conn) - before
        conn.rollback()
    finally:
        conn.close()
    return result, read


class _Explaining:
    """A cursor that runs the statement under EXPLAIN ANALYZE and keeps the plan."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.plan: dict[str, Any] = {}

    def execute(self, sql: str, params: Any = None) -> None:
        row = self.conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()
        assert row is not None
        plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        self.plan = plan[0]["Plan"]

    def fetchall(self) -> list[Any]:
        return []

    def fetchone(self) -> Any:
        return (0, 0)


def repeated_scans(write: Callable[[Any], Any]) -> list[str]:
    """The scans of the batch (or bitmap scans of pgjobs_job_queue) in ``write``'s plan that ran
    more than once: a nested loop over a batch of hundreds, whose cost grows with its square (a
    batch of ten may be planned so, at no cost worth the name)."""
    conn = second_connection(autocommit=False)
    try:
        explaining = _Explaining(conn)
        write(explaining)
        conn.rollback()
    finally:
        conn.close()
    return [
        f"{n['Node Type']} {n.get('Alias') or n.get('Relation Name')} x{n['Actual Loops']}"
        for n in plan_nodes(explaining.plan)
        if n["Actual Loops"] > 1
        and (n["Node Type"] == "Function Scan" or "Bitmap" in n["Node Type"])
    ]


def key_read(conn: psycopg.Connection[Any]) -> int:
    """Entries of pgjobs_job_queue's key that this connection's transaction has read so far."""
    row = conn.execute(
        "SELECT pg_stat_get_xact_tuples_returned('pgjobs_job_queue_pkey'::regclass)"
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("batch", BATCHES)
def test_completing_a_batch_reads_the_batch_not_every_running_job(batch: int) -> None:
    tokens = running_jobs(batch)
    completed, read = read_by(lambda cur: complete_jobs(cur, tokens=tokens, took=[0.01] * batch))
    assert sorted(completed) == sorted(tokens)
    # Its key holds two entries an attempt (the claim made a new version of the row), read
    # to lock the attempt; the write takes the locked row by its tuple id.
    assert read <= 3 * batch, read
    assert batch < 250 or not repeated_scans(lambda cur: complete_jobs(cur, tokens=tokens))


@pytest.mark.parametrize("batch", BATCHES)
def test_completing_a_batch_looks_each_attempt_up_in_the_key_once(batch: int) -> None:
    """The write takes each row by the tuple id its lock found (queries.outcomes): joined on the
    id, it descended the key a second time for every attempt of the batch."""
    tokens = running_jobs(batch)
    conn = second_connection(autocommit=False)
    try:
        before = key_read(conn)
        completed = complete_jobs(conn.cursor(), tokens=tokens, took=[0.01] * batch)
        read = key_read(conn) - before
        conn.rollback()
    finally:
        conn.close()
    assert sorted(completed) == sorted(tokens)
    # Two entries an attempt, its old version's and its new one's, found by the one lookup
    # (a second lookup would read 4 an attempt), and the few the planner of PostgreSQL 18 reads
    # at the key's ends to estimate the join.
    assert read <= 2 * batch + 5, read


@pytest.mark.parametrize("batch", BATCHES)
def test_renewing_a_batch_reads_the_batch_not_every_running_job(batch: int) -> None:
    tokens = running_jobs(batch)
    worker = {"id": "w", "hostname": "h", "pid": 1, "queues": "[]", "concurrency": batch,
              "instance_token": str(uuid.uuid4())}  # fmt: skip

    def renew(cur: Any) -> list[Token]:
        return heartbeat(cur, worker=worker, tokens=tokens, lease_seconds=60)

    lost, read = read_by(renew)
    assert lost == []
    # A few entries an attempt: its key holds two (the claim made a new version of the row),
    # read to lock it, to check it still holds its job, and to renew it.
    assert read <= 8 * batch, read
    assert batch < 250 or not repeated_scans(renew)


@pytest.mark.parametrize("batch", BATCHES)
def test_checking_a_batch_reads_the_batch_not_every_running_job(batch: int) -> None:
    tokens = running_jobs(batch)
    stale: Token = (tokens[0][0], uuid.uuid4())
    gone, read = read_by(lambda cur: no_longer_held(cur, tokens=[stale, *tokens[1:]]))
    assert gone == [stale]
    assert read <= 4 * batch, read
    assert batch < 250 or not repeated_scans(
        lambda cur: no_longer_held(cur, tokens=[stale, *tokens[1:]])
    )


@pytest.mark.parametrize("batch", [4, 250])
def test_a_batch_that_ends_workflows_reads_those_workflows_not_every_one(batch: int) -> None:
    """ENDED_CTE looks each ending's workflow up by its key. Joined to the endings, the planner
    took them for a hundred rows (jsonb_each's estimate) and hashed them against a scan of every
    workflow, finished ones included, for each batch; and which attempts it completes is judged
    once an attempt, where the test sat under the batch's unnest, run again for every job the
    statement locked (benchmarks/README.md, the twenty-third round)."""
    from django_pgjobs import start_workflow
    from tests.testapp import workflows as wf

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workflow_executions (workflow_id, name, status, app_version) "
            "SELECT 'old-' || i, 'w', 'completed', 'v' FROM generate_series(1, %s) AS i",
            [RUNNING],
        )
    ids = [start_workflow(wf.greet, "x").workflow_id for _ in range(batch)]
    with connection.cursor() as cur:
        cur.execute("ANALYZE pgjobs_workflow_executions")
    by_id = {job.payload["workflow_id"]: job.token for job in claimed_elsewhere(batch)}
    tokens = list(by_id.values())
    endings = [json.dumps({"id": i, "s": "completed", "o": 1}) for i in by_id]

    def complete(cur: Any) -> Any:
        return complete_jobs(cur, tokens=tokens, endings=endings)

    conn = second_connection(autocommit=False)
    try:
        before = rows_read(conn, "pgjobs_workflow_executions")
        completed = complete(conn.cursor())
        read = rows_read(conn, "pgjobs_workflow_executions") - before
        ended = conn.execute(
            "SELECT count(*) FROM pgjobs_workflow_executions WHERE status = 'completed' "
            "AND workflow_id = ANY(%s)",
            [ids],
        ).fetchone()
        conn.rollback()
    finally:
        conn.close()
    assert sorted(by_id) == sorted(ids) and sorted(completed) == sorted(tokens)
    assert ended == (batch,)
    # A few entries an ending: its lock, the check of a workflow gone meanwhile, its update.
    assert read <= 6 * batch, read
    assert batch < 250 or not repeated_scans(complete)


def test_a_batch_still_matches_only_the_attempts_it_names() -> None:
    """The key is only the way in: a stale token, or a job no longer running, matches nothing."""
    batch = running_jobs(10)
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
        gone = no_longer_held(conn.cursor(), tokens=stale)
        completed = complete_jobs(conn.cursor(), tokens=stale, took=[None] * 10)
    finally:
        conn.close()
    assert sorted(completed) == sorted(rest[1:])
    assert sorted(gone) == sorted(stale[:2])


CHECKPOINT: dict[str, Any] = {
    "workflow_id": "w", "index": 0, "name": "s", "status": "completed", "output": "1",
    "error": None, "attempts": 1, "started_at": datetime.now(UTC),
}  # fmt: skip


# One attempt's own writes, each fenced by FENCE (queries.base): from a handler thread (progress,
# metadata, a snooze, a failure, a cancel) and every statement of a running workflow.
ONE_ATTEMPT: dict[str, Callable[[Any, Token], Any]] = {
    "progress": lambda cur, t: report_progress(cur, token=t, progress=1, message="m"),
    "metadata": lambda cur, t: save_metadata(cur, token=t, metadata="{}"),
    "snooze": lambda cur, t: snooze_job(cur, token=t, delay=60),
    "failure": lambda cur, t: fail_job(cur, token=t, error="e", delay=60),
    "cancel": lambda cur, t: cancel_held_job(cur, token=t, error="e"),
    # The workflow's row is not there: the foreign key is checked at a commit that never comes.
    "checkpoint": lambda cur, t: record_step(cur, token=t, step=CHECKPOINT).held,
}


@pytest.mark.parametrize("write", ONE_ATTEMPT)
def test_one_attempts_write_reads_its_row_not_every_running_job(write: str) -> None:
    """As for a batch: written ``status = 'running'``, the fence let the planner find the one
    row through a partial index of running jobs, reading every running job of every worker
    (5,000 entries here) for each progress report or checkpoint."""
    [token] = running_jobs(1)
    result, read = read_by(lambda cur: ONE_ATTEMPT[write](cur, token))
    assert result not in (False, "lost", "held"), result
    # A few entries for each part of the statement (the row's two in its key, read to lock and to
    # check it; the key's ends PostgreSQL 18's planner reads; a failure's retry and dead-letter
    # parts): 2 to 9 on PostgreSQL 15, up to 18 on 18. Not the running set.
    assert read <= 50, read
