"""What became of an attempt: completed, or failed and then retried or buried (moved to the
dead letters). The worker's completer is the only caller.

Every write here is fenced on the attempt's lease token (see the package docstring): an attempt
whose job was rescued or cancelled meanwhile matches nothing, and its outcome is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from django_pgjobs.queries.base import (
    CLEAR_LEASE,
    FENCE,
    HELD,
    HELD_FENCE,
    UNDO_CLAIM,
    Cursor,
    Token,
    as_uuid,
    lease_params,
    notify_queues,
    token_params,
)

# Completing finished attempts, fenced on their lease tokens (see complete_jobs).

COMPLETED_CTE = f"""done AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'completed', completed_at = now(), {CLEAR_LEASE}
    FROM {HELD}
    WHERE {HELD_FENCE}
    RETURNING j.id
)"""


def complete_jobs(cur: Cursor, *, tokens: Sequence[Token]) -> list[uuid.UUID]:
    """Mark many finished attempts completed in one statement; returns the ids it completed.

    Fenced on (id, lease_token, running): an attempt whose job was rescued or cancelled meanwhile
    matches nothing and its outcome is dropped. Locks: those rows, briefly. A crash before this
    commits leaves the jobs running; they are rescued and run again (at-least-once).
    """
    if not tokens:
        return []
    cur.execute(f"WITH {COMPLETED_CTE} SELECT id FROM done", token_params(tokens))
    return [as_uuid(r[0]) for r in cur.fetchall()]


# Shared by fail and rescue: given the rows in CTE ``failing`` (already locked, each with its
# error and delay), bury those out of attempts and send the rest back to pending, in one
# statement. The two branches test opposite conditions, so no row is touched twice.
# RETRY_OR_BURY_CTES are the CTEs alone, for a statement that adds its own (the rescue).
RETRY_OR_BURY_CTES = f"""
buried AS (
    DELETE FROM pgjobs_job_queue AS j USING failing AS f
    WHERE j.id = f.id AND j.attempt >= j.max_attempts
    RETURNING j.id, j.job_name, j.payload, j.queue, j.priority, j.attempt, j.max_attempts,
              f.error, j.created_at
),
dead AS (
    INSERT INTO pgjobs_failed_jobs (id, job_name, payload, queue, priority, attempt,
                                    max_attempts, error, original_created_at)
    SELECT * FROM buried
    RETURNING id
),
retried AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'pending', error = f.error, {CLEAR_LEASE},
        scheduled_for = now() + make_interval(secs => f.delay)
    FROM failing AS f
    WHERE j.id = f.id AND j.attempt < j.max_attempts
    RETURNING j.id, j.queue, f.delay
)"""
RETRY_OR_BURY = f"""{RETRY_OR_BURY_CTES}
-- Jobs due again at once (rescues) wake idle workers; delayed retries are picked up by the
-- failing worker's own timer or by polling.
SELECT (SELECT count(*) FROM retried), (SELECT count(*) FROM dead),
       {notify_queues("retried", "WHERE delay <= 0")}
"""

FailOutcome = Literal["retried", "buried", "lost"]


def fail_job(
    cur: Cursor, *, token: Token, error: str, delay: float, spare: bool = False
) -> FailOutcome:
    """Record a failed attempt: back to pending after ``delay`` seconds, or dead-lettered.

    One statement, so a job is never both gone from the queue and missing from the dead letters.
    Fenced like :func:`complete_jobs`; returns "lost" when this attempt no longer owns the job.
    ``spare``: the attempt failed because its database connection was lost (an outage, not the
    job's fault), so it is not counted, once per job (``attempt_spared``): a job whose every
    attempt loses its connection still ends in the dead letters. Locks: the job row. A crash
    before commit leaves it running until its lease is rescued.
    """
    cur.execute(
        f"""
        WITH failing AS (
            SELECT id, %(error)s::text AS error, %(delay)s::float8 AS delay
            FROM pgjobs_job_queue
            WHERE {FENCE} AND NOT (%(spare)s AND NOT attempt_spared)
            FOR UPDATE
        ),
        spared AS (
            UPDATE pgjobs_job_queue AS j
            SET {UNDO_CLAIM}, attempt_spared = true, error = %(error)s,
                scheduled_for = now() + make_interval(secs => %(delay)s)
            WHERE {FENCE} AND %(spare)s AND NOT j.attempt_spared
            RETURNING j.queue, %(delay)s::float8 AS delay
        ),
        {RETRY_OR_BURY_CTES}
        SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM spared),
               (SELECT count(*) FROM dead),
               {notify_queues(_DUE_AGAIN, "WHERE delay <= 0")}
        """,
        {**lease_params(token), "error": error, "delay": delay, "spare": spare},
    )
    retried, buried, _ = cur.fetchone()
    if buried:
        return "buried"
    return "retried" if retried else "lost"


# The rows fail_job sent back to pending (a relation for notify_queues).
_DUE_AGAIN = "(SELECT queue, delay FROM retried UNION ALL SELECT queue, delay FROM spared) AS r"


# Burying an attempt's job whatever attempts it has left (see bury_job); the same move to the
# dead letters as RETRY_OR_BURY's, for one fenced row.
_BURY_NOW = f"""
WITH buried AS (
    DELETE FROM pgjobs_job_queue AS j
    WHERE {FENCE}
    RETURNING j.id, j.job_name, j.payload, j.queue, j.priority, j.attempt, j.max_attempts,
              %(error)s::text, j.created_at
),
dead AS (
    INSERT INTO pgjobs_failed_jobs (id, job_name, payload, queue, priority, attempt,
                                    max_attempts, error, original_created_at)
    SELECT * FROM buried
    RETURNING id
)
SELECT count(*) FROM dead
"""


def bury_job(cur: Cursor, *, token: Token, error: str) -> Literal["buried", "lost"]:
    """Record a failed attempt that no retry can cure (its payload cannot be decoded): the job
    moves to the dead letters now, attempts left or not.

    One statement, fenced like :func:`fail_job`; "lost" when this attempt no longer owns the
    job. Locks: the job row. A crash before commit leaves it running until its lease is rescued.
    """
    cur.execute(_BURY_NOW, {**lease_params(token), "error": error})
    (buried,) = cur.fetchone()
    return "buried" if buried else "lost"


@dataclass(frozen=True)
class JobState:
    status: str  # a job's status, or "dead" for a dead letter
    attempt: int
    error: str | None


def find_job_state(cur: Cursor, *, job_id: uuid.UUID) -> JobState | None:
    """Where a job is now, queue or dead letters: how a worker whose write of an outcome lost its
    reply tells whether that write committed. Reads by primary key; locks nothing. None when the
    job is in neither (pruned, or deleted by an operator)."""
    cur.execute(
        """
        SELECT status, attempt, error FROM pgjobs_job_queue WHERE id = %(id)s
        UNION ALL
        SELECT 'dead', attempt, error FROM pgjobs_failed_jobs WHERE id = %(id)s
        """,
        {"id": job_id},
    )
    row = cur.fetchone()
    return None if row is None else JobState(str(row[0]), int(row[1]), row[2])
