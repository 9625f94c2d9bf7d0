"""The rows ``explain_job`` reads by id: the job (with its worker's heartbeat) or its dead
letter, and the id a short prefix names; and when the rescue may next hand a job back. Small
reads; nothing here writes or locks a row."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django_pgjobs.queries.base import Cursor


@dataclass(frozen=True)
class JobRow:
    """A job's state as explain_job reads it, with the database's clock and the heartbeat of
    the worker named in ``locked_by`` (None: no such row)."""

    status: str
    job_name: str
    queue: str
    partition_key: str | None
    key: str | None
    attempt: int
    max_attempts: int
    scheduled_for: datetime
    failed: bool  # ``error`` is set: an attempt failed
    error_line: str | None  # the first line of ``error``
    locked_by: str | None
    locked_at: datetime | None
    lease_expires_at: datetime | None
    completed_at: datetime | None
    now: datetime
    worker_heartbeat_at: datetime | None


def find_job(cur: Cursor, *, job_id: uuid.UUID) -> JobRow | None:
    """The job's row (primary key) and its worker's (primary key). Locks nothing."""
    cur.execute(
        """
        SELECT j.status, j.job_name, j.queue, j.partition_key, j.key, j.attempt,
               j.max_attempts, j.scheduled_for, j.error IS NOT NULL,
               split_part(j.error, chr(10), 1), j.locked_by, j.locked_at, j.lease_expires_at,
               j.completed_at, now(), w.last_heartbeat_at
        FROM pgjobs_job_queue AS j LEFT JOIN pgjobs_workers AS w ON w.id = j.locked_by
        WHERE j.id = %s
        """,
        [job_id],
    )
    row = cur.fetchone()
    return None if row is None else JobRow(*row)


@dataclass(frozen=True)
class DeadLetterRow:
    job_name: str
    queue: str
    attempt: int
    max_attempts: int
    failed_at: datetime
    error_line: str | None
    now: datetime


def find_dead_letter(cur: Cursor, *, job_id: uuid.UUID) -> DeadLetterRow | None:
    """The dead letter with this id (primary key of pgjobs_failed_jobs). Locks nothing."""
    cur.execute(
        "SELECT job_name, queue, attempt, max_attempts, failed_at, split_part(error, chr(10), 1), "
        "now() "
        "FROM pgjobs_failed_jobs WHERE id = %s",
        [job_id],
    )
    row = cur.fetchone()
    return None if row is None else DeadLetterRow(*row)


def ids_starting_or_ending(cur: Cursor, *, digits: str) -> list[uuid.UUID]:
    """The ids of jobs and dead letters whose hex digits (lower case, no dashes) start or end
    with ``digits``, at most two: one is the answer, two is ambiguous. An id's start is a range
    of each primary key (uuid order is the order of the hex text); no index holds its end, so
    that reads every id (each table's key, or the table), for an operator's look-up. Locks
    nothing."""
    cur.execute(
        """
        SELECT id FROM (
            (SELECT id FROM pgjobs_job_queue WHERE id BETWEEN %(low)s AND %(high)s LIMIT 2)
            UNION
            (SELECT id FROM pgjobs_job_queue
             WHERE right(replace(id::text, '-', ''), %(n)s) = %(digits)s LIMIT 2)
            UNION
            (SELECT id FROM pgjobs_failed_jobs WHERE id BETWEEN %(low)s AND %(high)s LIMIT 2)
            UNION
            (SELECT id FROM pgjobs_failed_jobs
             WHERE right(replace(id::text, '-', ''), %(n)s) = %(digits)s LIMIT 2)
        ) AS found ORDER BY id LIMIT 2
        """,
        {
            "low": uuid.UUID(digits.ljust(32, "0")),
            "high": uuid.UUID(digits.ljust(32, "f")),
            "n": len(digits),
            "digits": digits,
        },
    )
    return [row[0] for row in cur.fetchall()]


def rescue_from(cur: Cursor, *, silent_seconds: float, hold_seconds: float) -> datetime | None:
    """The earliest database time a live worker (a heartbeat within ``silent_seconds``) may
    rescue: each holds its rescue for ``hold_seconds`` after it started, and every one for as
    long after the server started (rescue_expired_leases). None: no live worker. A worker back
    from an outage holds again, which no row records. Reads the worker rows; locks nothing."""
    cur.execute(
        """
        SELECT greatest(min(w.started_at), pg_postmaster_start_time())
               + make_interval(secs => %(hold)s)
        FROM pgjobs_workers AS w
        WHERE w.last_heartbeat_at >= now() - make_interval(secs => %(silent)s)
        HAVING count(*) > 0
        """,
        {"silent": silent_seconds, "hold": hold_seconds},
    )
    row = cur.fetchone()
    return None if row is None else row[0]
