"""Background upkeep: when the next job is due, the worker registry, pruning jobs and workflows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django_pgjobs.queries.base import (
    PENDING_PRIORITIES,
    Cursor,
    filter_params,
    filters,
    workflow_key,
)

# How many of the earliest pending jobs the look-up reads past paused queues' jobs. A paused
# queue's backlog sits at the head of the index (it is all due); past this many, the worker
# waits for a notification or its next poll instead of reading the whole backlog.
NEXT_DUE_SCAN = 1000


def seconds_until_next_due(
    cur: Cursor, *, queues: Sequence[str] | None, job_names: Sequence[str] | None
) -> float | None:
    """How long an idle worker may sleep before a pending job it could run becomes due.

    Reads the head of each priority's range of pgjobs_job_claim (in due order), passing over
    jobs of paused queues (at most NEXT_DUE_SCAN rows a priority); None when no pending job it
    could start is found. A job due now but held back by a limit is due (0): the worker looks
    again shortly (pacing.LOCKED_ROW_RECHECK).
    """
    # Per priority, the first job not in a paused queue, read in the claim index's own order
    # (so the scan is that index's, never a sort of the priority's jobs) and stopping there:
    # one entry per priority unless paused queues' jobs come first.
    cur.execute(
        f"""
        WITH RECURSIVE {PENDING_PRIORITIES}
        SELECT extract(epoch FROM min(head.due) - now())::float8
        FROM pending_priorities AS p, LATERAL (
            SELECT h.scheduled_for AS due FROM (
                SELECT j.queue, j.scheduled_for FROM pgjobs_job_queue AS j
                WHERE j.status = 'pending' AND j.priority = p.priority
                  {filters(queues, job_names)}
                ORDER BY j.priority DESC, j.scheduled_for, j.id
                LIMIT {NEXT_DUE_SCAN}
            ) AS h
            WHERE h.queue NOT IN (SELECT name FROM pgjobs_queues WHERE paused)
            LIMIT 1
        ) AS head
        WHERE p.priority IS NOT NULL
        """,
        filter_params(queues, job_names),
    )
    row = cur.fetchone()
    return None if row is None or row[0] is None else max(float(row[0]), 0.0)


def seconds_until_rate_room(cur: Cursor, *, queues: Sequence[str] | None) -> float | None:
    """When the earliest start recorded in a rate window leaves it, freeing room for another
    (None: no window of a queue with a due job holds a start). For a worker whose due jobs a
    rate limit holds back, so it claims again the moment the limit allows rather than at its
    next recheck (and a burst worker waits for it). Reads the first entry of
    pgjobs_queue_starts_window in each rate-limited queue's window, not the window's every
    start (100,000 with a per-key rate and a day's period), and one entry of
    pgjobs_job_queue_claim for whether the queue has a due job."""
    where = ""
    if queues:
        where = "AND q.name = ANY(%(queues)s)"
    cur.execute(
        f"""
        SELECT extract(epoch FROM min(f.started_at + q.rate_period) - now())::float8
        FROM pgjobs_queues AS q CROSS JOIN LATERAL (
            SELECT s.started_at FROM pgjobs_queue_starts AS s
            WHERE s.queue = q.name AND s.started_at > now() - q.rate_period
            ORDER BY s.started_at LIMIT 1
        ) AS f
        WHERE NOT q.paused AND (q.rate_limit IS NOT NULL OR q.partition_rate_limit IS NOT NULL)
          -- A scalar subquery, not EXISTS, which the planner may turn into a join.
          AND (SELECT 1 FROM pgjobs_job_queue AS j
               WHERE j.status = 'pending' AND j.queue = q.name AND j.scheduled_for <= now()
               ORDER BY j.priority DESC, j.scheduled_for, j.id LIMIT 1) IS NOT NULL
          {where}
        """,
        {"queues": list(queues or ())},
    )
    row = cur.fetchone()
    return None if row is None or row[0] is None else max(float(row[0]), 0.0)


@dataclass(frozen=True)
class WorkerRow:
    """Who holds a worker id: where it runs, and how long since its last heartbeat."""

    hostname: str
    pid: int
    silent_for: float


def find_worker(cur: Cursor, *, worker_id: str) -> WorkerRow | None:
    cur.execute(
        "SELECT hostname, pid, extract(epoch FROM now() - last_heartbeat_at)::float8 "
        "FROM pgjobs_workers WHERE id = %s",
        [worker_id],
    )
    row = cur.fetchone()
    return None if row is None else WorkerRow(str(row[0]), int(row[1]), float(row[2]))


def register_worker(cur: Cursor, *, worker: dict[str, Any], silent_seconds: float) -> bool:
    """Take the worker id ``worker["id"]`` for this process; False if a live worker holds it.

    The id is free when nobody has it, when its holder has been silent longer than
    ``silent_seconds`` (it is dead; delete_stale_workers would forget it), or when the row
    carries this process's own ``instance_token``. Never by host name and pid: two containers
    with one host name and both pid 1 are two processes. One statement, so two processes
    starting under one id cannot both win: the loser's ON CONFLICT sees the winner's fresh row.
    Locks the worker's row. ``worker["handlers"]``: a JSON array of the job names it claims
    (absent or None: not known, stored as NULL).
    """
    cur.execute(
        """
        INSERT INTO pgjobs_workers (id, hostname, pid, queues, concurrency, instance_token,
                                    handlers)
        VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s,
                %(instance_token)s, %(handlers)s::jsonb)
        ON CONFLICT (id) DO UPDATE
        SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, queues = EXCLUDED.queues,
            concurrency = EXCLUDED.concurrency, instance_token = EXCLUDED.instance_token,
            handlers = EXCLUDED.handlers, started_at = now(), last_heartbeat_at = now(),
            unrenewed = '[]'::jsonb
        WHERE pgjobs_workers.last_heartbeat_at < now() - make_interval(secs => %(silent)s)
           OR pgjobs_workers.instance_token = EXCLUDED.instance_token
        RETURNING true
        """,
        {"handlers": None, **worker, "silent": silent_seconds},
    )
    return cur.fetchone() is not None


def deregister_worker(cur: Cursor, *, worker_id: str, instance_token: str) -> None:
    """Remove this process's worker row (never another process's row under the same id)."""
    cur.execute(
        "DELETE FROM pgjobs_workers WHERE id = %s AND instance_token = %s",
        [worker_id, instance_token],
    )


def delete_stale_workers(cur: Cursor, *, silent_seconds: float) -> int:
    """Forget workers silent for longer than a lease: their jobs are the rescue sweep's now."""
    cur.execute(
        "DELETE FROM pgjobs_workers WHERE last_heartbeat_at < now() - make_interval(secs => %s)",
        [silent_seconds],
    )
    return int(getattr(cur, "rowcount", 0))


def prune_finished_jobs(cur: Cursor, *, older_than_seconds: float, batch: int = 5000) -> int:
    """Delete one batch of completed/cancelled jobs that finished before the retention window.

    Batches keep each delete short, so pruning a large backlog never holds many row locks or
    one long transaction; callers loop until it returns less than ``batch``. Uses
    pgjobs_job_finished and skips rows someone else is deleting.
    """
    cur.execute(
        """
        DELETE FROM pgjobs_job_queue WHERE id IN (
            SELECT id FROM pgjobs_job_queue
            WHERE status IN ('completed', 'cancelled')
              AND completed_at < now() - make_interval(secs => %(older)s)
            ORDER BY completed_at
            LIMIT %(batch)s
            FOR UPDATE SKIP LOCKED
        )
        """,
        {"older": older_than_seconds, "batch": batch},
    )
    return int(getattr(cur, "rowcount", 0))


def prune_queue_starts(cur: Cursor) -> int:
    """Delete the rate ledger's rows that no window reads any more (older than their queue's
    rate_period, or of a queue without a row). Uses pgjobs_queue_starts_window; locks only the
    ledger rows it deletes (a claim appending meanwhile is not blocked)."""
    cur.execute(
        """
        DELETE FROM pgjobs_queue_starts AS s
        WHERE s.started_at <= now() - coalesce(
            (SELECT q.rate_period FROM pgjobs_queues AS q WHERE q.name = s.queue),
            interval '0')
        """
    )
    return int(getattr(cur, "rowcount", 0))


def prune_finished_workflows(cur: Cursor, *, older_than_seconds: float, batch: int = 1000) -> int:
    """Delete one batch of workflows that ended before the retention window, with their steps,
    messages and events, in one statement (the foreign keys are checked at its end).

    Uses pgjobs_workflow_finished; skips rows another pruner holds. Returns how many went.
    """
    cur.execute(
        f"""
        WITH old AS (
            SELECT workflow_id FROM pgjobs_workflow_executions
            WHERE status IN ('completed', 'failed', 'cancelled', 'dead')
              AND completed_at < now() - make_interval(secs => %(older)s)
              -- Not while its job is queued or running again (a requeued dead letter, a
              -- cancelled attempt still finishing), nor while a parent may still read its
              -- result.
              AND NOT EXISTS (
                  SELECT 1 FROM pgjobs_job_queue AS j
                  WHERE j.key = {workflow_key("pgjobs_workflow_executions.workflow_id")}
                    AND j.status IN ('pending', 'running')
              )
              AND NOT EXISTS (
                  SELECT 1 FROM pgjobs_workflow_executions AS p
                  WHERE p.workflow_id = pgjobs_workflow_executions.parent_workflow_id
                    AND p.status IN ('pending', 'running')
              )
            ORDER BY completed_at
            LIMIT %(batch)s
            FOR UPDATE SKIP LOCKED
        ),
        steps AS (DELETE FROM pgjobs_workflow_steps AS s USING old
                  WHERE s.workflow_id = old.workflow_id),
        messages AS (DELETE FROM pgjobs_workflow_messages AS m USING old
                     WHERE m.workflow_id = old.workflow_id),
        events AS (DELETE FROM pgjobs_workflow_events AS e USING old
                   WHERE e.workflow_id = old.workflow_id),
        gone AS (DELETE FROM pgjobs_workflow_executions AS w USING old
                 WHERE w.workflow_id = old.workflow_id RETURNING 1)
        SELECT count(*) FROM gone
        """,
        {"older": older_than_seconds, "batch": batch},
    )
    return int(cur.fetchone()[0])
