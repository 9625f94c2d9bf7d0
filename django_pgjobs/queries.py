"""Every statement that changes a job's state, one small function each.

Each comment says which rows the statement locks, which index it relies on and what a crash at
that point leaves behind. The rule they all follow: a state change is one statement, so it either
happened or it did not, and no row lock is ever held while user code runs.

Fencing: every claim stamps the row with a fresh random ``lease_token``, and a worker must present
``(id, lease_token)`` to complete, fail, release, heartbeat or report progress. A worker whose
lease expired (it was paused, partitioned, or presumed dead) and whose job was rescued, cancelled
or claimed again therefore finds its writes matching no row: it can never overwrite the outcome
of the attempt that took over, even when that attempt runs on the same worker.

Functions take any DB-API cursor (a psycopg cursor or Django's wrapper): enqueueing uses the
caller's Django connection so it joins the caller's transaction; the worker uses its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

NOTIFY_CHANNEL = "pgjobs"

# (job id, lease token): what a worker presents to prove it still holds an attempt.
Token = tuple[uuid.UUID, uuid.UUID]

_ACTIVE = "('pending', 'running')"
# The partial unique index pgjobs_job_key_active, spelled so ON CONFLICT can infer it.
_KEY_CONFLICT = f"ON CONFLICT (key) WHERE key IS NOT NULL AND status IN {_ACTIVE}"


class Cursor(Protocol):
    def execute(self, sql: Any, params: Any = ...) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Any: ...


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker knows about a job it holds: enough to run it and to fence its writes."""

    id: uuid.UUID
    job_name: str
    payload: Any
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    scheduled_for: datetime
    lease_token: uuid.UUID

    @property
    def token(self) -> Token:
        return (self.id, self.lease_token)


def _token_params(tokens: Sequence[Token]) -> dict[str, list[uuid.UUID]]:
    return {"ids": [t[0] for t in tokens], "tokens": [t[1] for t in tokens]}


_HELD = "unnest(%(ids)s::uuid[], %(tokens)s::uuid[]) AS held(id, token)"


# -- enqueue ---------------------------------------------------------------------------------

_INSERT_COLUMNS = "id, job_name, payload, queue, priority, max_attempts, scheduled_for, key"
_INSERT_VALUES = """(
    %(id)s, %(job_name)s, %(payload)s::jsonb, %(queue)s, %(priority)s, %(max_attempts)s,
    COALESCE(%(at)s::timestamptz, now()) + make_interval(secs => %(delay)s), %(key)s
)"""


def insert_job(cur: Cursor, row: dict[str, Any]) -> uuid.UUID | None:
    """Insert one job; with a key already active, do nothing and return None.

    Locks: the new row only; a conflicting key waits for the transaction that holds it. The AFTER
    INSERT trigger queues a NOTIFY that PostgreSQL delivers at commit, so a rollback wakes no one.
    """
    sql = f"INSERT INTO pgjobs_job_queue ({_INSERT_COLUMNS}) VALUES {_INSERT_VALUES}"
    if row["key"] is not None:
        sql += f" {_KEY_CONFLICT} DO NOTHING"
    cur.execute(sql + " RETURNING id", row)
    found = cur.fetchone()
    return None if found is None else _uuid(found[0])


def upsert_pending_job(cur: Cursor, row: dict[str, Any]) -> uuid.UUID | None:
    """Insert, or replace the still-pending job holding ``row["key"]`` (pgpm's upsert).

    The replaced job keeps its id and starts afresh (attempt 0, no error). Returns None when the
    key is held by a running job, which this statement leaves alone. Locks: the conflicting row,
    even a running one, until the caller's transaction ends.
    """
    cur.execute(
        f"""
        WITH upserted AS (
            INSERT INTO pgjobs_job_queue ({_INSERT_COLUMNS}) VALUES {_INSERT_VALUES}
            {_KEY_CONFLICT} DO UPDATE SET
                job_name = EXCLUDED.job_name, payload = EXCLUDED.payload, queue = EXCLUDED.queue,
                priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
                scheduled_for = EXCLUDED.scheduled_for, attempt = 0, error = NULL,
                progress = NULL, progress_message = NULL
            WHERE pgjobs_job_queue.status = 'pending'
            RETURNING id, queue
        )
        -- The insert trigger only sees inserted rows; a replaced job must wake workers too.
        SELECT id, pg_notify('pgjobs', queue) FROM upserted
        """,
        row,
    )
    found = cur.fetchone()
    return None if found is None else _uuid(found[0])


def find_active_job_by_key(cur: Cursor, key: str) -> tuple[uuid.UUID, str] | None:
    """The pending-or-running job holding ``key``, via the partial unique index."""
    cur.execute(
        f"SELECT id, status FROM pgjobs_job_queue WHERE key = %s AND status IN {_ACTIVE}", [key]
    )
    found = cur.fetchone()
    return None if found is None else (_uuid(found[0]), str(found[1]))


def detach_key_from_running_job(cur: Cursor, key: str) -> None:
    """Let a new job take ``key`` from the running one (pgpm: "removes the key").

    The running job keeps going with its old payload and no key; its replacement may run at the
    same time. Locks the running row until the caller's transaction ends.
    """
    cur.execute(
        "UPDATE pgjobs_job_queue SET key = NULL WHERE key = %s AND status = 'running'", [key]
    )


def insert_jobs(cur: Cursor, rows: dict[str, Any]) -> None:
    """Insert many jobs of one name in one round trip.

    ``rows["ids"]`` and ``rows["payloads"]`` are parallel arrays; the other options are shared.
    The statement-level trigger sends one NOTIFY per queue, not one per row.
    """
    cur.execute(
        """
        INSERT INTO pgjobs_job_queue (id, job_name, payload, queue, priority, max_attempts,
                                      scheduled_for)
        SELECT u.id, %(job_name)s, u.payload::jsonb, %(queue)s, %(priority)s, %(max_attempts)s,
               COALESCE(%(at)s::timestamptz, now()) + make_interval(secs => %(delay)s)
        FROM unnest(%(ids)s::uuid[], %(payloads)s::text[]) AS u(id, payload)
        """,
        rows,
    )


# -- the worker's hot path -------------------------------------------------------------------

_CLAIM = """
WITH due AS (
    SELECT id FROM pgjobs_job_queue
    WHERE status = 'pending' AND scheduled_for <= now() {filters}
    ORDER BY priority DESC, scheduled_for, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pgjobs_job_queue AS j
SET status = 'running', attempt = j.attempt + 1, locked_by = %(worker_id)s, locked_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    lease_token = gen_random_uuid()
FROM due WHERE j.id = due.id
RETURNING j.id, j.job_name, j.payload::text, j.queue, j.priority, j.attempt, j.max_attempts,
          j.scheduled_for, j.lease_token
"""


def _filters(queues: Sequence[str] | None, job_names: Sequence[str] | None) -> str:
    # One queue is an equality, so the claim can walk pgjobs_job_queue_claim in order.
    sql = ""
    if queues and len(queues) == 1:
        sql += " AND queue = %(queue)s"
    elif queues:
        sql += " AND queue = ANY(%(queues)s)"
    if job_names is not None:
        sql += " AND job_name = ANY(%(job_names)s)"
    return sql


def _filter_params(queues: Sequence[str] | None, job_names: Sequence[str] | None) -> dict[str, Any]:
    return {
        "queue": queues[0] if queues else None,
        "queues": list(queues or ()),
        "job_names": list(job_names or ()),
    }


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
        _CLAIM.format(filters=_filters(queues, job_names)),
        {
            "worker_id": worker_id,
            "limit": limit,
            "lease_seconds": lease_seconds,
            **_filter_params(queues, job_names),
        },
    )
    jobs = [
        ClaimedJob(
            id=_uuid(r[0]),
            job_name=r[1],
            payload=json.loads(r[2]),
            queue=r[3],
            priority=r[4],
            attempt=r[5],
            max_attempts=r[6],
            scheduled_for=r[7],
            lease_token=_uuid(r[8]),
        )
        for r in cur.fetchall()
    ]
    # UPDATE ... RETURNING gives no order; run in the order the claim chose.
    jobs.sort(key=lambda j: (-j.priority, j.scheduled_for, j.id))
    return jobs


def complete_jobs(cur: Cursor, *, tokens: Sequence[Token]) -> list[uuid.UUID]:
    """Mark many finished attempts completed in one statement; returns the ids it completed.

    Fenced on (id, lease_token, running): an attempt whose job was rescued or cancelled meanwhile
    matches nothing and its outcome is dropped. Locks: those rows, briefly. A crash before this
    commits leaves the jobs running; they are rescued and run again (at-least-once).
    """
    if not tokens:
        return []
    cur.execute(
        f"""
        UPDATE pgjobs_job_queue AS j
        SET status = 'completed', completed_at = now(), locked_by = NULL,
            lease_expires_at = NULL, lease_token = NULL
        FROM {_HELD}
        WHERE j.id = held.id AND j.lease_token = held.token AND j.status = 'running'
        RETURNING j.id
        """,
        _token_params(tokens),
    )
    return [_uuid(r[0]) for r in cur.fetchall()]


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
        _RELEASE.format(which=f"(j.id, j.lease_token) IN (SELECT id, token FROM {_HELD})"),
        _token_params(tokens),
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
        held AS (SELECT * FROM {_HELD}),
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
        {**worker, **_token_params(tokens), "lease_seconds": lease_seconds},
    )
    return [_uuid(r[0]) for r in cur.fetchall()]


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


def seconds_until_next_due(
    cur: Cursor, *, queues: Sequence[str] | None, job_names: Sequence[str] | None
) -> float | None:
    """How long an idle worker may sleep before a pending job it could run becomes due.

    Reads the head of pgjobs_job_next_due; None when no pending job exists.
    """
    cur.execute(
        f"""
        SELECT extract(epoch FROM scheduled_for - now())::float8 FROM pgjobs_job_queue
        WHERE status = 'pending' {_filters(queues, job_names)}
        ORDER BY scheduled_for LIMIT 1
        """,
        _filter_params(queues, job_names),
    )
    row = cur.fetchone()
    return None if row is None else max(float(row[0]), 0.0)


def deregister_worker(cur: Cursor, *, worker_id: str) -> None:
    cur.execute("DELETE FROM pgjobs_workers WHERE id = %s", [worker_id])


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


# -- operator actions (cold, but still one statement per state change) ------------------------


def retry_job(cur: Cursor, *, job_id: uuid.UUID) -> bool:
    """Make a pending or cancelled job due now. A cancelled one starts afresh: attempt budget,
    error and progress reset (its lease token is gone, so a still-running cancelled handler can
    never write over the new attempt). Locks the job row. False when not retryable or absent."""
    cur.execute(
        """
        WITH retried AS (
            UPDATE pgjobs_job_queue
            SET attempt = CASE WHEN status = 'cancelled' THEN 0 ELSE attempt END,
                error = CASE WHEN status = 'cancelled' THEN NULL ELSE error END,
                progress = CASE WHEN status = 'cancelled' THEN NULL ELSE progress END,
                progress_message = CASE WHEN status = 'cancelled' THEN NULL
                                        ELSE progress_message END,
                status = 'pending', scheduled_for = now(), completed_at = NULL
            WHERE id = %s AND status IN ('pending', 'cancelled')
            RETURNING queue
        )
        SELECT pg_notify('pgjobs', queue) FROM retried
        """,
        [job_id],
    )
    return cur.fetchone() is not None


def cancel_job(cur: Cursor, *, job_id: uuid.UUID) -> bool:
    """Cancel a pending or running job. A running handler is not interrupted, but its outcome
    is fenced out (its lease token is cleared). Locks the job row."""
    cur.execute(
        """
        UPDATE pgjobs_job_queue
        SET status = 'cancelled', completed_at = now(), locked_by = NULL,
            lease_expires_at = NULL, lease_token = NULL
        WHERE id = %s AND status IN ('pending', 'running')
        RETURNING id
        """,
        [job_id],
    )
    return cur.fetchone() is not None


def requeue_dead_letter(cur: Cursor, *, job_id: uuid.UUID) -> uuid.UUID | None:
    """Move a dead letter back to the queue as a new job, in one statement (so, atomically).

    The new job has the same name, payload, queue, priority and max_attempts and a fresh attempt
    counter; the insert trigger wakes workers at commit. Returns None if there is no such id.
    """
    cur.execute(
        """
        WITH dead AS (DELETE FROM pgjobs_failed_jobs WHERE id = %s RETURNING *)
        INSERT INTO pgjobs_job_queue (job_name, payload, queue, priority, max_attempts)
        SELECT job_name, payload, queue, priority, max_attempts FROM dead
        RETURNING id
        """,
        [job_id],
    )
    row = cur.fetchone()
    return None if row is None else _uuid(row[0])


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
