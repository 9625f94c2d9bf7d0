"""What became of an attempt other than its completion (queries.completions): failed and then
retried or buried (moved to the dead letters), or cancelled by its own handler. The worker's
completer is the only caller.

Every write here is fenced on the attempt's lease token (see the package docstring): an attempt
whose job was rescued or cancelled meanwhile matches nothing, and its outcome is dropped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from django_pgjobs.queries.base import (
    CLEAR_LEASE,
    MINE,
    MINE_TO_DELETE,
    UNDO_CLAIM,
    Cursor,
    Token,
    append_failure,
    lease_params,
    notify_queues,
    record_start,
    w3c_trace,
)

# A failing attempt's row ``j`` with its failure ``f`` (error, exception, took) in the history.
_FAILURE_RECORDED = append_failure(error="f.error", exception="f.exception", took="f.took")

# The dead letter's columns, in pgjobs_failed_jobs' order below, from a job row ``j`` that is
# being deleted with its failure ``f``.
DEAD_LETTER_COLUMNS = (
    "id, job_name, payload, queue, priority, attempt, max_attempts, error, original_created_at, "
    "started_at, metadata, error_history, trace_context, partition_key, timeout"
)


def dead_letter_values(error: str, history: str) -> str:
    """The RETURNING list that moves row ``j`` to the dead letters (DEAD_LETTER_COLUMNS); its
    trace context without anything but the trace (:func:`w3c_trace`)."""
    return (
        "j.id, j.job_name, j.payload, j.queue, j.priority, j.attempt, j.max_attempts, "
        f"{error}, j.created_at, coalesce(j.started_at, j.locked_at), j.metadata, {history}, "
        f"{w3c_trace('j.trace_context')}, j.partition_key, j.timeout"
    )


# Shared by fail and rescue: given the rows in CTE ``failing`` (already locked, each with its
# error, exception class, how long it ran and delay), bury those out of attempts and send the
# rest back to pending, in one statement. The two branches test opposite conditions, so no row
# is touched twice. RETRY_OR_BURY_CTES are the CTEs alone, for a statement that adds its own.
RETRY_OR_BURY_CTES = f"""
buried AS (
    DELETE FROM pgjobs_job_queue AS j USING failing AS f
    WHERE j.id = f.id AND j.attempt >= j.max_attempts
    RETURNING {dead_letter_values("f.error", _FAILURE_RECORDED)}
),
dead AS (
    INSERT INTO pgjobs_failed_jobs ({DEAD_LETTER_COLUMNS})
    SELECT * FROM buried
    RETURNING id
),
retried AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'pending', error = f.error, error_history = {_FAILURE_RECORDED},
        {record_start("f.took")}, {CLEAR_LEASE},
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
    cur: Cursor,
    *,
    token: Token,
    error: str,
    delay: float,
    spare: bool = False,
    exception: str | None = None,
    took: float | None = None,
    last: bool = False,
) -> FailOutcome:
    """Record a failed attempt: back to pending after ``delay`` seconds, or dead-lettered.

    One statement, so a job is never both gone from the queue and missing from the dead letters.
    Fenced like :func:`complete_jobs`; returns "lost" when this attempt no longer owns the job.
    ``spare``: the attempt failed because its database connection was lost (an outage, not the
    job's fault), so it is not counted, once per job (``attempt_spared``): a job whose every
    attempt loses its connection still ends in the dead letters. The failure joins the job's
    ``error_history`` with ``exception`` (the class path of what was raised) and when the
    attempt started (``took`` seconds ago when its start was not recorded). Locks: the job row,
    unless another transaction holds it ("lost" then too: base.MINE). ``last``: the caller
    expects the attempt to be the job's last (it moves the row to the dead letters), so the row
    is locked as for a delete (base.MINE_TO_DELETE): a lock a foreign key's check holds on it
    then makes it skip the row, where upgrading a weaker lock to delete it would wait. A crash
    before commit leaves it running until its lease is rescued.
    """
    cur.execute(
        f"""
        WITH {MINE_TO_DELETE if last else MINE},
        failing AS (
            SELECT id, %(error)s::text AS error, %(delay)s::float8 AS delay,
                   %(exception)s::text AS exception, %(took)s::float8 AS took
            FROM pgjobs_job_queue
            WHERE id IN (SELECT id FROM mine) AND NOT (%(spare)s AND NOT attempt_spared)
        ),
        spared AS (
            UPDATE pgjobs_job_queue AS j
            SET {UNDO_CLAIM}, attempt_spared = true, error = %(error)s,
                error_history = {_GIVEN_FAILURE_RECORDED},
                scheduled_for = now() + make_interval(secs => %(delay)s)
            WHERE j.id IN (SELECT id FROM mine) AND %(spare)s AND NOT j.attempt_spared
            RETURNING j.queue, %(delay)s::float8 AS delay
        ),
        {RETRY_OR_BURY_CTES}
        SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM spared),
               (SELECT count(*) FROM dead),
               {notify_queues(_DUE_AGAIN, "WHERE delay <= 0")}
        """,
        {
            **lease_params(token),
            "error": error,
            "delay": delay,
            "spare": spare,
            "exception": exception,
            "took": took,
        },
    )
    retried, buried, _ = cur.fetchone()
    if buried:
        return "buried"
    return "retried" if retried else "lost"


# A failure given as parameters joins the history: a spared attempt's (it ran and failed,
# though it does not count) and one buried at once.
_GIVEN_FAILURE_RECORDED = append_failure(
    error="%(error)s::text", exception="%(exception)s::text", took="%(took)s::float8"
)

# The rows fail_job sent back to pending (a relation for notify_queues).
_DUE_AGAIN = "(SELECT queue, delay FROM retried UNION ALL SELECT queue, delay FROM spared) AS r"


# Burying an attempt's job whatever attempts it has left (see bury_job); the same move to the
# dead letters as RETRY_OR_BURY's, for one fenced row.
_BURY_NOW = f"""
WITH {MINE_TO_DELETE},
buried AS (
    DELETE FROM pgjobs_job_queue AS j
    WHERE j.id IN (SELECT id FROM mine)
    RETURNING {dead_letter_values("%(error)s::text", _GIVEN_FAILURE_RECORDED)}
),
dead AS (
    INSERT INTO pgjobs_failed_jobs ({DEAD_LETTER_COLUMNS})
    SELECT * FROM buried
    RETURNING id
)
SELECT count(*) FROM dead
"""


def bury_job(
    cur: Cursor,
    *,
    token: Token,
    error: str,
    exception: str | None = None,
    took: float | None = None,
) -> Literal["buried", "lost"]:
    """Record a failed attempt that no retry can cure (its payload cannot be decoded, or the
    handler said not to retry): the job moves to the dead letters now, attempts left or not.

    One statement, fenced like :func:`fail_job` (``exception`` and ``took`` as there); "lost"
    when this attempt no longer owns the job or another transaction holds its row (base.MINE).
    Locks: the job row. A crash before commit leaves it running until its lease is rescued.
    """
    cur.execute(
        _BURY_NOW,
        {**lease_params(token), "error": error, "exception": exception, "took": took},
    )
    (buried,) = cur.fetchone()
    return "buried" if buried else "lost"


def cancel_held_job(
    cur: Cursor,
    *,
    token: Token,
    error: str,
    exception: str | None = None,
    took: float | None = None,
) -> Literal["cancelled", "lost"]:
    """A handler raised ``Cancel``: its job ends ``cancelled`` now, never retried, with
    ``error`` (the reason) recorded and the attempt in ``error_history`` (``exception`` and
    ``took`` as in :func:`fail_job`). "lost" when this attempt no longer owns the job (fenced)
    or another transaction holds its row (base.MINE).

    Locks the job row (primary key). A crash before commit leaves it running until its lease is
    rescued; the attempt then counts and the job runs again.
    """
    cur.execute(
        f"""
        WITH {MINE}
        UPDATE pgjobs_job_queue AS j
        SET status = 'cancelled', completed_at = now(), error = %(error)s,
            error_history = {_GIVEN_FAILURE_RECORDED}, {record_start("%(took)s::float8")},
            {CLEAR_LEASE}
        WHERE j.id IN (SELECT id FROM mine)
        RETURNING j.id
        """,
        {**lease_params(token), "error": error, "exception": exception, "took": took},
    )
    return "cancelled" if cur.fetchone() is not None else "lost"


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
