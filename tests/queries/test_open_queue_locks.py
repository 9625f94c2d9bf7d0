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


def _claim_beside_held(held: str, limit: int, columns: str) -> tuple[list[Any], int]:
    """A claim of ``limit`` while another transaction holds the rows ``held`` (a condition)
    selects: (``columns`` of the jobs it took, in the order the claim returned them, rows it
    locked and left pending)."""
    holder = second_connection(autocommit=False)
    conn = second_connection()
    try:
        holder.execute(f"SELECT id FROM pgjobs_job_queue WHERE {held} FOR UPDATE").fetchall()
        claimed, locked_pending = _claim_in_transaction(conn, limit)
        rows = conn.execute(
            f"SELECT {columns} FROM pgjobs_job_queue AS j "
            "JOIN unnest(%s::uuid[]) WITH ORDINALITY AS c(id, n) ON c.id = j.id ORDER BY c.n",
            [[uuid.UUID(str(i)) for i in claimed]],
        ).fetchall()
        conn.execute("ROLLBACK")
    finally:
        holder.rollback()
        holder.close()
        conn.close()
    return rows, locked_pending


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
    """The ranking is read without locks: rows another transaction holds (20 of q01's, all
    of them chosen) are made up for by every open queue walking on past held rows for as many
    more, the merge taking the best: the jobs each queue's first ``limit``, all locked, gave.
    Only then is more locked than taken: as many as were missing, per open queue."""
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


def test_a_better_job_of_another_queue_goes_before_a_worse_one_behind_held_rows() -> None:
    """q1's two best jobs are held by another transaction: the claim of two takes q2's
    priority 5 jobs, not the priority 0 jobs behind the held ones in q1 (a review's case)."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue, priority) "
            "SELECT 'test.record', q, p FROM (VALUES ('q1', 10, 2), ('q1', 0, 10), "
            "('q2', 5, 10)) AS v(q, p, n), generate_series(1, v.n)"
        )
    pause_queue("held")
    rows, locked_pending = _claim_beside_held(
        "queue = 'q1' AND priority = 10", 2, "queue, priority"
    )
    assert rows == [("q2", 5), ("q2", 5)]
    assert locked_pending == 2  # q1's next two, offered when both picks were held


def test_one_transactions_jobs_are_taken_in_the_order_they_were_enqueued() -> None:
    """Equal priority and due time: enqueue order decides, within a queue as between queues,
    as the merge ranks them (a review's case, when ids were random)."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, queue) "
            "SELECT 'test.record', q FROM unnest(ARRAY['q1', 'q2']) AS q, "
            "generate_series(1, 20) AS n ORDER BY q, n"
        )
    pause_queue("held")
    conn = second_connection()
    try:
        claimed, _ = _claim_in_transaction(conn, 25)
        seqs = conn.execute(
            "SELECT seq - (SELECT min(seq) FROM pgjobs_job_queue) + 1 FROM pgjobs_job_queue "
            "WHERE id = ANY(%s) ORDER BY seq",
            [[uuid.UUID(str(i)) for i in claimed]],
        ).fetchall()
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert [r[0] for r in seqs] == list(range(1, 26))


def _ranked(priorities: dict[str, list[int]]) -> None:
    with connection.cursor() as cur:
        for queue, levels in priorities.items():
            cur.execute(
                "INSERT INTO pgjobs_job_queue (job_name, queue, priority) "
                "SELECT 'test.record', %s, p FROM unnest(%s::int[]) AS p",
                [queue, levels],
            )
    pause_queue("held")


def test_a_claim_walks_past_held_rows_its_second_look_finds_held_too() -> None:
    """An application holds q1's two best jobs: the ranking's pick is held, and so is the
    next best; the claim of one walks on to the third (a review's case: it took nothing)."""
    _ranked({"q1": [10, 9, 8, 7]})
    priorities, _ = _claim_beside_held("priority IN (10, 9)", 1, "priority")
    assert priorities == [(8,)]


def test_overlapping_claims_each_fill_their_batch() -> None:
    """Three claims in flight at once, each holding what it took: each takes a full batch
    (a review's case: the third, ranking what the first two held, took nothing)."""
    _ranked({f"q{n}": [0] * 100 for n in range(3)})
    conns = [second_connection() for _ in range(3)]
    try:
        got = [len(_claim_in_transaction(conn, 10)[0]) for conn in conns]
    finally:
        for conn in conns:
            conn.execute("ROLLBACK")
            conn.close()
    assert got == [10, 10, 10]
