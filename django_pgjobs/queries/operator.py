"""Operator actions on jobs and dead letters: cold paths, but still one statement per state
change."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django_pgjobs.queries.base import (
    CANCEL_CHANNEL,
    CLEAR_LEASE,
    Cursor,
    as_uuid,
    is_workflow_job,
    notify_queues,
    w3c_trace,
    workflow_key,
)


@dataclass(frozen=True)
class Changed:
    """A job an operator's statement changed, for its log line and signal."""

    job_name: str
    queue: str
    attempt: int  # after the change
    was: str  # its status before


def retry_job(cur: Cursor, *, job_id: uuid.UUID) -> Changed | None:
    """Make a pending or cancelled job due now. A cancelled one starts afresh: attempt budget,
    error and progress reset (its lease token is gone, so a still-running cancelled handler can
    never write over the new attempt). Locks the job row (primary key; its status before is
    read under that lock). None when not retryable or absent."""
    cur.execute(
        f"""
        WITH target AS (
            SELECT id, status FROM pgjobs_job_queue
            WHERE id = %s AND status IN ('pending', 'cancelled')
            FOR UPDATE
        ),
        retried AS (
            UPDATE pgjobs_job_queue AS j
            SET attempt = CASE WHEN t.status = 'cancelled' THEN 0 ELSE j.attempt END,
                error = CASE WHEN t.status = 'cancelled' THEN NULL ELSE j.error END,
                progress = CASE WHEN t.status = 'cancelled' THEN NULL ELSE j.progress END,
                progress_message = CASE WHEN t.status = 'cancelled' THEN NULL
                                        ELSE j.progress_message END,
                status = 'pending', scheduled_for = now(), completed_at = NULL
            FROM target AS t WHERE j.id = t.id
            RETURNING j.job_name, j.queue, j.attempt, t.status
        )
        SELECT job_name, queue, attempt, status, {notify_queues("retried")} FROM retried
        """,
        [job_id],
    )
    found = cur.fetchone()
    return None if found is None else Changed(*found[:4])


def cancel_job(cur: Cursor, *, job_id: uuid.UUID) -> Changed | None:
    """Cancel a pending or running job; None if it was neither. A running handler is not
    interrupted, but its outcome is fenced out (its lease token is cleared), and its worker
    hears of it at commit through a NOTIFY on CANCEL_CHANNEL naming the attempt
    (``RunningAttempt.is_cancelled``). Locks the job row (primary key); the old token is read
    under that lock, so it is the attempt cancelled."""
    cur.execute(
        f"""
        WITH target AS (
            SELECT id, status, lease_token FROM pgjobs_job_queue
            WHERE id = %s AND status IN ('pending', 'running')
            FOR UPDATE
        ),
        cancelled AS (
            UPDATE pgjobs_job_queue AS j
            SET status = 'cancelled', completed_at = now(),
                started_at = coalesce(j.started_at, j.locked_at), {CLEAR_LEASE}
            FROM target WHERE j.id = target.id
            RETURNING j.job_name, j.queue, j.attempt, target.status
        )
        SELECT job_name, queue, attempt, status,
               (SELECT count(pg_notify('{CANCEL_CHANNEL}', id::text || ':' || lease_token::text))
                FROM target WHERE status = 'running' AND lease_token IS NOT NULL)
        FROM cancelled
        """,
        [job_id],
    )
    found = cur.fetchone()
    return None if found is None else Changed(*found[:4])


# A dead letter's row back in the queue under its own id (a task's result id, the admin's
# link, a log line's id keep pointing at it): the same name, payload, queue, priority,
# max_attempts, metadata, failure history, first start, partition key and timeout (migration
# 0026: it runs in its partition again, in claim order behind that key's jobs due before it),
# and trace context (its next run is
# still a span of the trace that enqueued it; the trace only, as w3c_trace says), a fresh
# attempt counter; the insert trigger wakes workers at commit. Dead letters do not keep a key,
# but a workflow's job gets its key back: wake-ups find the workflow by it. Due at now(), the
# claim's clock, not at the column default's statement_timestamp(): inside a longer transaction
# (a test's) that is later than now(), and never due in it.
_REQUEUE_DEAD = f"""
    INSERT INTO pgjobs_job_queue (id, job_name, payload, queue, priority, max_attempts, metadata,
                                  error_history, started_at, trace_context, partition_key,
                                  timeout, key, scheduled_for)
    SELECT id, job_name, payload, queue, priority, max_attempts, metadata, error_history,
           started_at, {w3c_trace("trace_context")}, partition_key, timeout,
           CASE WHEN {is_workflow_job()} THEN {workflow_key("(payload ->> 'workflow_id')")} END,
           now()
    FROM dead
"""


def requeue_dead_letter(cur: Cursor, *, job_id: uuid.UUID) -> Changed | None:
    """Move a dead letter back to the queue, under its own id, in one statement (so,
    atomically). Locks the dead-letter row (primary key). None if there is no such id."""
    cur.execute(
        f"""
        WITH dead AS (DELETE FROM pgjobs_failed_jobs WHERE id = %s RETURNING *)
        {_REQUEUE_DEAD}
        RETURNING job_name, queue, attempt, 'dead'
        """,
        [job_id],
    )
    row = cur.fetchone()
    return None if row is None else Changed(*row)


@dataclass(frozen=True)
class Requeued:
    count: int
    job_ids: list[uuid.UUID]  # the first few jobs' ids (their dead letters'; all for a few)


def requeue_dead_letters(
    cur: Cursor, *, selected: str, params: Sequence[Any], show: int = 5
) -> Requeued:
    """Move every dead letter whose id the query ``selected`` returns back to the queue (each
    under its own id), in one statement, however many: each row is in one table or the other,
    never both.

    Locks the dead-letter rows it deletes (a concurrent requeue of one of them waits, then finds
    it gone: no row is requeued twice). Index: what ``selected`` uses (the primary key for a list
    of ids; filters by name, queue or error scan the dead letters, a cold table). A crash before
    the commit leaves every dead letter where it was. ``selected`` is SQL the ORM compiled (the
    caller's filters), its values in ``params``. A workflow's job whose workflow already has an
    active job raises IntegrityError (its key): nothing is moved.
    """
    cur.execute(
        f"""
        WITH dead AS (DELETE FROM pgjobs_failed_jobs WHERE id IN ({selected}) RETURNING *),
        added AS ({_REQUEUE_DEAD} RETURNING id)
        SELECT (SELECT count(*) FROM added), ARRAY(SELECT id FROM added LIMIT %s)
        """,
        [*params, show],
    )
    count, ids = cur.fetchone()
    return Requeued(count=count, job_ids=[as_uuid(i) for i in ids])
