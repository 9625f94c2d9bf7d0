"""A flow-controlled claim locks only the rows it takes from the queues no rule restricts.

Once any queue a worker serves has a rule (a pause is enough), its claims take each queue on
its own (queries.flow). The open queues' candidates used to be locked a claim's ``limit`` per
queue before the merge chose among them: 60 open queues and one paused queue, and a claim of
500 locked 30,000 rows (1.9 MB of WAL), which every other worker's claim then skipped. Counted
here in rows, never in time: a row this transaction locked and did not update still carries its
transaction id in ``xmax``.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection

from django_pgjobs.queries.claim import claim_statement
from django_pgjobs.queues import pause_queue
from tests.helpers import second_connection

pytestmark = pytest.mark.django_db(transaction=True)

QUEUES = 12
PER_QUEUE = 60


def _enqueue() -> None:
    """PER_QUEUE due jobs in each of QUEUES open queues, enqueued queue by queue (so the merge's
    enqueue order puts the first queues' jobs first), and a paused queue with its own."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue) "
            "SELECT 'test.record', 'q' || lpad(q::text, 2, '0') "
            "FROM generate_series(1, %s) AS q, generate_series(1, %s) AS n ORDER BY q, n",
            [QUEUES, PER_QUEUE],
        )
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue) "
            "SELECT 'test.record', 'held' FROM generate_series(1, 100)"
        )
        cur.execute("ANALYZE pgjobs_job_queue")
    pause_queue("held")


def _claim_in_transaction(conn: psycopg.Connection[Any], limit: int) -> tuple[list[Any], int]:
    """The flow-controlled claim inside a transaction left open: (claimed ids, rows it locked
    and left pending)."""
    sql, params = claim_statement(
        worker_id="w", limit=limit, lease_seconds=60, queues=None, job_names=None, flow=True
    )
    conn.execute("BEGIN")
    rows = conn.execute(sql, params).fetchall()
    claimed = [r[1] for r in rows if r[0] == "claimed"]
    locked = conn.execute(
        "SELECT count(*) FROM pgjobs_job_queue WHERE status = 'pending' "
        "AND xmax::text = pg_current_xact_id()::xid::text"
    ).fetchone()
    assert locked is not None
    return claimed, int(locked[0])


def _queues_of(conn: psycopg.Connection[Any], ids: list[Any]) -> list[tuple[str, int]]:
    return conn.execute(
        "SELECT queue, count(*)::int FROM pgjobs_job_queue WHERE id = ANY(%s) GROUP BY queue "
        "ORDER BY queue",
        [[uuid.UUID(str(i)) for i in ids]],
    ).fetchall()


@pytest.mark.parametrize("limit", [1, 50, 500])
def test_a_flow_claim_locks_no_open_queue_row_it_does_not_take(limit: int) -> None:
    _enqueue()
    conn = second_connection()
    try:
        claimed, locked_pending = _claim_in_transaction(conn, limit)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert len(claimed) == min(limit, QUEUES * PER_QUEUE)
    assert locked_pending == 0


def test_it_takes_the_best_jobs_of_all_open_queues_in_the_merges_order() -> None:
    """The first queues' jobs, enqueued first, as the merge ranks them (the enqueue order)."""
    _enqueue()
    conn = second_connection()
    try:
        claimed, _ = _claim_in_transaction(conn, 2 * PER_QUEUE + 10)
        conn.execute("ROLLBACK")
        queues = _queues_of(conn, claimed)
    finally:
        conn.close()
    assert queues == [("q01", PER_QUEUE), ("q02", PER_QUEUE), ("q03", 10)]


def test_rows_another_claim_holds_are_made_up_for_by_the_next_best_of_every_queue() -> None:
    """The quota is read without locks: when rows another transaction holds leave a queue
    short of it (q01 has 40 free jobs, and its quota is 60), every open queue offers as many
    more as are missing, and the merge takes the best of them: the same jobs as when each
    queue offered its first ``limit``, with 20 locked per other queue instead of 60."""
    _enqueue()
    holder = second_connection(autocommit=False)
    conn = second_connection()
    try:
        held = holder.execute(
            "SELECT id FROM pgjobs_job_queue WHERE queue = 'q01' "
            "ORDER BY priority DESC, scheduled_for, id LIMIT 20 FOR UPDATE"
        ).fetchall()
        claimed, locked_pending = _claim_in_transaction(conn, PER_QUEUE)
        conn.execute("ROLLBACK")
        taken = _queues_of(conn, claimed)
    finally:
        holder.rollback()
        holder.close()
        conn.close()
    assert len(claimed) == PER_QUEUE
    assert not {str(r[0]) for r in held} & {str(i) for i in claimed}
    assert taken == [("q01", PER_QUEUE - 20), ("q02", 20)]
    # q01 has no more to offer; q02's 20 were taken; q03 to q12 offered 20 each, left locked.
    assert locked_pending == 20 * (QUEUES - 2)
