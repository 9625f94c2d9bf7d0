"""The reads behind the sentences of an ``explain_job`` answer, once :mod:`.explain` has
classified the job: the jobs in its way, the workers it could go to, when a rate window has room.
Each reads a few rows through an index; nothing here writes or locks a row."""

from __future__ import annotations

import uuid
from datetime import datetime

from django_pgjobs.queries.base import Cursor
from django_pgjobs.queries.explain import _LIVE, _before_in_key, _serves


def running_jobs(
    cur: Cursor, *, queue: str, partition_key: str | None, keyed: bool, limit: int
) -> list[tuple[uuid.UUID, str | None]]:
    """The first ``limit`` running jobs of ``queue`` (with ``keyed``, of its ``partition_key``;
    None: the jobs without a key), longest running first, with the worker holding each.
    Through pgjobs_job_running; locks nothing."""
    key = " AND partition_key IS NOT DISTINCT FROM %(key)s" if keyed else ""
    cur.execute(
        f"""
        SELECT id, locked_by FROM pgjobs_job_queue
        WHERE status = 'running' AND queue = %(queue)s{key}
        ORDER BY locked_at NULLS LAST, id LIMIT %(limit)s
        """,
        {"queue": queue, "key": partition_key, "limit": limit},
    )
    return [(row[0], row[1]) for row in cur.fetchall()]


def earlier_in_key(cur: Cursor, *, job_id: uuid.UUID, keyed: bool, limit: int) -> list[uuid.UUID]:
    """The first ``limit`` due jobs of the job's queue and key (``keyed``: the job has one)
    that the claim's key order puts before it. Through pgjobs_job_partition_claim; locks
    nothing."""
    cur.execute(
        f"""
        SELECT k.id FROM pgjobs_job_queue AS j, pgjobs_job_queue AS k
        WHERE j.id = %(id)s AND {_before_in_key(keyed=keyed)}
        ORDER BY k.priority DESC, k.scheduled_for, k.seq NULLS FIRST LIMIT %(limit)s
        """,
        {"id": job_id, "limit": limit},
    )
    return [row[0] for row in cur.fetchall()]


def unreachable_in_key(
    cur: Cursor, *, job_id: uuid.UUID, keyed: bool, silent_seconds: float, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """The first ``limit`` due jobs before the job in its key's order whose handler no live
    worker serving the queue with the job's own handler has (a claim stops there), with
    their job names. Through pgjobs_job_partition_claim; locks nothing."""
    cur.execute(
        f"""
        WITH {_LIVE}
        SELECT k.id, k.job_name FROM pgjobs_job_queue AS j, pgjobs_job_queue AS k
        WHERE j.id = %(id)s AND {_before_in_key(keyed=keyed)} AND NOT EXISTS (
            SELECT 1 FROM live AS l WHERE {_serves("l", "j.queue")} AND (l.unknown OR (
                l.handlers ? j.job_name AND l.handlers ? k.job_name)))
        ORDER BY k.priority DESC, k.scheduled_for, k.seq NULLS FIRST LIMIT %(limit)s
        """,
        {"id": job_id, "limit": limit, "silent": silent_seconds},
    )
    return [(row[0], row[1]) for row in cur.fetchall()]


def ahead_in_queue(cur: Cursor, *, job_id: uuid.UUID, cap: int) -> int:
    """How many due jobs of the job's queue the claim order (priority, due time, id) puts
    before it, counted up to ``cap``. Through pgjobs_job_queue_claim; locks nothing."""
    cur.execute(
        """
        SELECT count(*) FROM (
            SELECT 1 FROM pgjobs_job_queue AS j, pgjobs_job_queue AS k
            WHERE j.id = %(id)s AND k.status = 'pending' AND k.scheduled_for <= now()
              AND k.queue = j.queue
              AND (k.priority > j.priority OR (k.priority = j.priority AND (
                   k.scheduled_for < j.scheduled_for
                   OR (k.scheduled_for = j.scheduled_for AND k.id < j.id))))
            LIMIT %(cap)s) AS ahead
        """,
        {"id": job_id, "cap": cap},
    )
    return int(cur.fetchone()[0])


def rate_room_at(
    cur: Cursor, *, queue: str, partition_key: str | None, keyed: bool, limit: int
) -> datetime | None:
    """When the starts in the queue's rate window (with ``keyed``, those of ``partition_key``)
    next number fewer than ``limit``: the ledger's starts drop out of the window one claim at a
    time, oldest first (None: they already do). The window is the claim's, read through
    pgjobs_queue_starts_window (a key's: pgjobs_queue_starts_key); locks nothing."""
    # An equality or IS NULL, so pgjobs_queue_starts_key reads one key's window.
    key = (
        ""
        if not keyed
        else " AND s.partition_key " + ("IS NULL" if partition_key is None else "= %(key)s")
    )
    cur.execute(
        f"""
        SELECT min(w.started_at + w.rate_period) FROM (
            SELECT s.started_at, q.rate_period,
                   sum(s.jobs) OVER () - sum(s.jobs) OVER (
                       ORDER BY s.started_at, s.id ROWS UNBOUNDED PRECEDING) AS left_after
            FROM pgjobs_queue_starts AS s JOIN pgjobs_queues AS q ON q.name = s.queue
            WHERE s.queue = %(queue)s AND s.started_at > now() - q.rate_period{key}
        ) AS w
        WHERE w.left_after < %(limit)s
        """,
        {"queue": queue, "key": partition_key, "limit": limit},
    )
    row = cur.fetchone()
    return None if row is None else row[0]


def serving_workers(
    cur: Cursor, *, queue: str, silent_seconds: float, limit: int
) -> list[tuple[str, list[str] | None]]:
    """The first ``limit`` live workers (by id) that serve ``queue``, with the job names they
    recorded (None: not recorded), as the classification counts them. Locks nothing."""
    cur.execute(
        f"""
        WITH {_LIVE}
        SELECT l.id, CASE WHEN jsonb_typeof(l.handlers) = 'array' THEN ARRAY(
                   SELECT jsonb_array_elements_text(l.handlers)) END
        FROM live AS l WHERE {_serves("l", "%(queue)s")}
        ORDER BY l.id LIMIT %(limit)s
        """,
        {"queue": queue, "silent": silent_seconds, "limit": limit},
    )
    return [(row[0], None if row[1] is None else list(row[1])) for row in cur.fetchall()]


def live_workers(cur: Cursor, *, silent_seconds: float, limit: int) -> tuple[int, list[str]]:
    """How many workers are live, and the ids of the first ``limit``. Locks nothing."""
    cur.execute(
        f"WITH {_LIVE} SELECT (SELECT count(*) FROM live), "
        "ARRAY(SELECT id FROM live ORDER BY id LIMIT %(limit)s)",
        {"silent": silent_seconds, "limit": limit},
    )
    count, ids = cur.fetchone()
    return int(count), list(ids)
