"""The worker's hot path: claim, complete, fail or bury, rescue, release, heartbeat, progress.

Every write here is fenced on the attempt's lease token (see the package docstring).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from django_pgjobs.queries.base import (
    HELD,
    ClaimedJob,
    Cursor,
    Token,
    as_uuid,
    filter_params,
    filters,
    token_params,
)

# The claim as two CTEs, ``due`` and ``claimed``: the claim statement selects from ``claimed``,
# and complete_and_claim() puts a completion beside them in the same statement.
_CLAIM_CTES = """
due AS (
    SELECT id FROM pgjobs_job_queue
    WHERE status = 'pending' AND scheduled_for <= now() {filters}
    ORDER BY priority DESC, scheduled_for, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    -- An array, not a join with ``due``: the planner costs a join for LIMIT rows and often
    -- prefers hashing them against a sequential scan of the whole table (2.5 ms at 20,000
    -- rows, more as the queue grows); = ANY(ARRAY(...)) always looks the ids up in the key.
    UPDATE pgjobs_job_queue AS j
    SET status = 'running', attempt = j.attempt + 1, locked_by = %(worker_id)s,
        locked_at = now(), lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        lease_token = gen_random_uuid()
    WHERE j.id = ANY(ARRAY(SELECT id FROM due))
    RETURNING j.id, j.job_name, j.payload::text AS payload, j.queue, j.priority, j.attempt,
              j.max_attempts, j.scheduled_for, j.lease_token
)"""

_CLAIMED_COLUMNS = (
    "id, job_name, payload, queue, priority, attempt, max_attempts, scheduled_for, lease_token"
)

# Completing finished attempts, fenced on their lease tokens (see complete_jobs).

_COMPLETED_CTE = f"""done AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'completed', completed_at = now(), locked_by = NULL,
        lease_expires_at = NULL, lease_token = NULL
    FROM {HELD}
    WHERE j.id = held.id AND j.lease_token = held.token AND j.status = 'running'
    RETURNING j.id
)"""


def _claim_params(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queues: Sequence[str] | None,
    job_names: Sequence[str] | None,
) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "limit": limit,
        "lease_seconds": lease_seconds,
        **filter_params(queues, job_names),
    }


def claim_statement(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queues: Sequence[str] | None,
    job_names: Sequence[str] | None,
) -> tuple[str, dict[str, Any]]:
    """The claim's SQL and parameters (tests EXPLAIN exactly what the worker runs)."""
    ctes = _CLAIM_CTES.format(filters=filters(queues, job_names))
    sql = f"WITH {ctes}\nSELECT {_CLAIMED_COLUMNS} FROM claimed"
    params = _claim_params(
        worker_id=worker_id,
        limit=limit,
        lease_seconds=lease_seconds,
        queues=queues,
        job_names=job_names,
    )
    return sql, params


def _claimed_jobs(rows: Sequence[Any]) -> list[ClaimedJob]:
    jobs = [
        ClaimedJob(
            id=as_uuid(r[0]),
            job_name=r[1],
            payload=json.loads(r[2]),
            queue=r[3],
            priority=r[4],
            attempt=r[5],
            max_attempts=r[6],
            scheduled_for=r[7],
            lease_token=as_uuid(r[8]),
        )
        for r in rows
    ]
    # UPDATE ... RETURNING gives no order; run in the order the claim chose.
    jobs.sort(key=lambda j: (-j.priority, j.scheduled_for, j.id))
    return jobs


def claim_jobs(
    cur: Cursor,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queues: Sequence[str] | None,
    job_names: Sequence[str] | None,
) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs, best priority first, in one round trip.

    Locks: the chosen rows, only for this autocommit statement; rows another worker is claiming
    (or an application transaction holds) are skipped, never waited for. Walks pgjobs_job_claim,
    or pgjobs_job_queue_claim for a single queue, in order and stops at ``limit``. ``job_names``
    limits the claim to handlers this worker has, so a rolling deploy never hands a new kind of
    job to an old worker. A crash after commit leaves the jobs running under a lease nobody
    renews; the rescue sweep hands them back when it expires.
    """
    cur.execute(
        *claim_statement(
            worker_id=worker_id,
            limit=limit,
            lease_seconds=lease_seconds,
            queues=queues,
            job_names=job_names,
        )
    )
    return _claimed_jobs(cur.fetchall())


def complete_and_claim(
    cur: Cursor,
    *,
    tokens: Sequence[Token],
    worker_id: str,
    limit: int,
    lease_seconds: float,
    queues: Sequence[str] | None,
    job_names: Sequence[str] | None,
) -> tuple[list[uuid.UUID], list[ClaimedJob]]:
    """:func:`complete_jobs` and :func:`claim_jobs` in one statement: one round trip and one
    commit where a busy worker would otherwise pay two. Returns (completed ids, claimed jobs).

    The two touch disjoint rows (running ones completed, pending ones claimed). Locks and crash
    behaviour are those of the two statements; a crash before commit leaves the completions to
    be redone (at-least-once) and claims nothing.
    """
    ctes = _CLAIM_CTES.format(filters=filters(queues, job_names))
    cur.execute(
        f"""
        WITH {_COMPLETED_CTE}, {ctes}
        SELECT true, {_CLAIMED_COLUMNS} FROM claimed
        UNION ALL
        SELECT false, id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM done
        """,
        {
            **_claim_params(
                worker_id=worker_id,
                limit=limit,
                lease_seconds=lease_seconds,
                queues=queues,
                job_names=job_names,
            ),
            **token_params(tokens),
        },
    )
    rows = cur.fetchall()
    completed = [as_uuid(r[1]) for r in rows if not r[0]]
    return completed, _claimed_jobs([r[1:] for r in rows if r[0]])


def complete_jobs(cur: Cursor, *, tokens: Sequence[Token]) -> list[uuid.UUID]:
    """Mark many finished attempts completed in one statement; returns the ids it completed.

    Fenced on (id, lease_token, running): an attempt whose job was rescued or cancelled meanwhile
    matches nothing and its outcome is dropped. Locks: those rows, briefly. A crash before this
    commits leaves the jobs running; they are rescued and run again (at-least-once).
    """
    if not tokens:
        return []
    cur.execute(f"WITH {_COMPLETED_CTE} SELECT id FROM done", token_params(tokens))
    return [as_uuid(r[0]) for r in cur.fetchall()]


# Shared by fail and rescue: given the rows in CTE ``failing`` (already locked, each with its
# error and delay), bury those out of attempts and send the rest back to pending, in one
# statement. The two branches test opposite conditions, so no row is touched twice.
_RETRY_OR_BURY = """
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
    -- locked_at stays: it tells when the failed attempt started.
    SET status = 'pending', error = f.error, locked_by = NULL, lease_expires_at = NULL,
        lease_token = NULL, scheduled_for = now() + make_interval(secs => f.delay)
    FROM failing AS f
    WHERE j.id = f.id AND j.attempt < j.max_attempts
    RETURNING j.id, j.queue, f.delay
),
woken AS (
    -- Jobs due again at once (rescues) wake idle workers; delayed retries are picked up by the
    -- failing worker's own timer or by polling.
    SELECT pg_notify('pgjobs', q.queue)
    FROM (SELECT DISTINCT queue FROM retried WHERE delay <= 0) AS q
)
SELECT (SELECT count(*) FROM retried), (SELECT count(*) FROM dead), (SELECT count(*) FROM woken)
"""

FailOutcome = Literal["retried", "buried", "lost"]


def fail_job(cur: Cursor, *, token: Token, error: str, delay: float) -> FailOutcome:
    """Record a failed attempt: back to pending after ``delay`` seconds, or dead-lettered.

    One statement, so a job is never both gone from the queue and missing from the dead letters.
    Fenced like :func:`complete_jobs`; returns "lost" when this attempt no longer owns the job.
    Locks: the job row. A crash before commit leaves it running until its lease is rescued.
    """
    cur.execute(
        f"""
        WITH failing AS (
            SELECT id, %(error)s::text AS error, %(delay)s::float8 AS delay
            FROM pgjobs_job_queue
            WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
            FOR UPDATE
        ),
        {_RETRY_OR_BURY}
        """,
        {"id": token[0], "token": token[1], "error": error, "delay": delay},
    )
    retried, buried, _ = cur.fetchone()
    if buried:
        return "buried"
    return "retried" if retried else "lost"


def rescue_expired_leases(cur: Cursor, *, limit: int = 500) -> tuple[int, int]:
    """Hand back running jobs whose worker stopped renewing its lease; (retried, buried).

    The crashed attempt counts: it was added by the claim, so a job that keeps killing its worker
    ends in the dead letters instead of looping. Rescued jobs are due at once: the lease already
    waited. Locks: up to ``limit`` expired rows via pgjobs_job_lease, skipping rows another
    rescuer holds, so any number of workers can sweep at once.
    """
    cur.execute(
        f"""
        WITH failing AS (
            SELECT id,
                   format('Lease expired: worker %%s stopped heartbeating during attempt %%s '
                          '(locked at %%s).', locked_by, attempt, locked_at) AS error,
                   0::float8 AS delay
            FROM pgjobs_job_queue
            WHERE status = 'running' AND lease_expires_at < now()
            ORDER BY lease_expires_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ),
        {_RETRY_OR_BURY}
        """,
        {"limit": limit},
    )
    retried, buried, _ = cur.fetchone()
    return int(retried), int(buried)


_RELEASE = """
WITH released AS (
    UPDATE pgjobs_job_queue AS j
    SET status = 'pending', attempt = j.attempt - 1, locked_by = NULL, locked_at = NULL,
        lease_expires_at = NULL, lease_token = NULL
    WHERE j.status = 'running' AND {which}
    RETURNING j.queue
)
SELECT (SELECT count(*) FROM released),
       (SELECT count(pg_notify('pgjobs', q.queue)) FROM (SELECT DISTINCT queue FROM released) AS q)
"""


def release_jobs(cur: Cursor, *, tokens: Sequence[Token]) -> int:
    """Give back claimed jobs whose handlers never started (shutdown): the attempt is undone.

    Locks: those rows. A crash before commit leaves them to the rescue sweep instead.
    """
    if not tokens:
        return 0
    cur.execute(
        _RELEASE.format(which=f"(j.id, j.lease_token) IN (SELECT id, token FROM {HELD})"),
        token_params(tokens),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def release_untracked_jobs(cur: Cursor, *, worker_id: str, tracked: Sequence[Token]) -> int:
    """After a reconnect: give back jobs this worker claimed but never heard about.

    A claim can commit and its reply be lost with the connection; those rows are running under
    this worker's id with no handler, and would burn an attempt waiting for their lease to
    expire. Worker ids are unique per process, so a running row with our id and a token we do
    not hold is such a claim: undo the attempt and make it due again. Scans running rows only.
    """
    cur.execute(
        _RELEASE.format(
            which="j.locked_by = %(worker_id)s AND j.lease_token <> ALL(%(tokens)s::uuid[])"
        ),
        {"worker_id": worker_id, "tokens": [t[1] for t in tracked]},
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


def heartbeat(
    cur: Cursor, *, worker: dict[str, Any], tokens: Sequence[Token], lease_seconds: float
) -> list[uuid.UUID]:
    """Renew this worker's row and the leases of the attempts it holds; one round trip.

    Upserts the worker row so a worker that was presumed dead (and swept) reappears. Rows an
    application transaction has locked (a cancel in progress, say) are skipped rather than waited
    for, so one slow transaction never stalls the worker's heartbeat. Returns the ids of held
    jobs this attempt no longer owns (rescued or cancelled): their outcome will be dropped.
    """
    cur.execute(
        f"""
        WITH me AS (
            INSERT INTO pgjobs_workers (id, hostname, pid, queues, concurrency)
            VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s::jsonb, %(concurrency)s)
            ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now()
        ),
        held AS (SELECT * FROM {HELD}),
        renewable AS (
            SELECT j.id FROM pgjobs_job_queue AS j JOIN held
                ON j.id = held.id AND j.lease_token = held.token
            WHERE j.status = 'running'
            FOR UPDATE OF j SKIP LOCKED
        ),
        renewed AS (
            UPDATE pgjobs_job_queue AS j
            SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
            FROM renewable WHERE j.id = renewable.id
        )
        SELECT held.id FROM held
        WHERE NOT EXISTS (
            SELECT 1 FROM pgjobs_job_queue AS j
            WHERE j.id = held.id AND j.lease_token = held.token AND j.status = 'running'
        )
        """,
        {**worker, **token_params(tokens), "lease_seconds": lease_seconds},
    )
    return [as_uuid(r[0]) for r in cur.fetchall()]


def report_progress(
    cur: Cursor, *, token: Token, progress: int | None, message: str | None
) -> None:
    """Write a running attempt's progress columns. Fenced; locks the job row briefly."""
    cur.execute(
        """
        UPDATE pgjobs_job_queue SET progress = %(progress)s, progress_message = %(message)s
        WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
        """,
        {"id": token[0], "token": token[1], "progress": progress, "message": message},
    )
