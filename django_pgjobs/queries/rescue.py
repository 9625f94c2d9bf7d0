"""The rescue: jobs whose worker stopped renewing their lease (it died, froze or lost the
database) go back to pending, or to the dead letters if that was their last attempt. Every worker
sweeps; no leader is needed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from django_pgjobs.queries.base import UNDO_CLAIM, Cursor, local_time_text, notify_queues
from django_pgjobs.queries.outcomes import RETRY_OR_BURY_CTES

# The rows the rescue made due again (a relation for notify_queues).
_BACK_TO_PENDING = "(SELECT queue FROM retried UNION ALL SELECT queue FROM unstarted) AS back"


@dataclass(frozen=True)
class DeadLettered:
    """A job the rescue moved to the dead letters, as its ``job_dead_lettered`` tells of it."""

    id: uuid.UUID
    job_name: str
    queue: str
    attempt: int
    error: str
    worker_id: str  # the dead worker whose attempt it was


@dataclass(frozen=True)
class Rescued:
    retried: int  # back to pending, due at once
    buried: int  # that was their last attempt: moved to the dead letters
    unstarted: int = 0  # claimed ahead and never started: back to pending, attempt not counted
    # For the worker's log line: the first NAMED of the jobs rescued and of the dead workers
    # that held them (by id), and how many dead workers there were in all.
    job_ids: tuple[uuid.UUID, ...] = ()
    worker_ids: tuple[str, ...] = ()
    workers: int = 0
    dead_letters: tuple[DeadLettered, ...] = ()  # every job it buried (at most ``limit``)

    @property
    def total(self) -> int:
        return self.retried + self.buried + self.unstarted


# Jobs and dead workers a rescue names (the rest are counted): a sweep takes up to 500.
NAMED = 5


def rescue_expired_leases(
    cur: Cursor,
    *,
    limit: int = 500,
    server_up_for: float = 0.0,
    time_zone: str = "UTC",
    silent_seconds: float = 60.0,
    pass_dying_workflows: bool = False,
) -> Rescued:
    """Hand back running jobs whose worker stopped renewing its lease.

    An attempt that started counts: it was added by the claim, so a job that keeps killing its
    worker ends in the dead letters instead of looping. A job claimed ahead (prefetched) whose
    start the worker never recorded (``locked_at`` is NULL) did not run: its attempt is undone
    and it keeps its place in line, unless an attempt of it was spared before
    (``attempt_spared``: its claims then count at once). So a job that kills its worker before
    its start could be recorded is spared once, not for ever. Rescued jobs are due at once: the
    lease already waited. Locks: up to ``limit`` expired rows via pgjobs_job_lease, skipping
    rows another rescuer holds, so any number of workers can sweep at once.

    Nothing is rescued until the server has been up for ``server_up_for`` seconds (the
    rescuer's hold, database time): after a restart, every lease ran out during the downtime
    through no fault of its worker, which needs that long to reconnect and renew it.

    A lease that ran out because another transaction held the job's row (its worker's
    heartbeat skips such rows, and lists their tokens in ``pgjobs_workers.unrenewed``) is not
    rescued while that worker is alive, a heartbeat within ``silent_seconds`` (the worker
    passes the same silence it counts workers dead by): the job is running, and taking it over
    once the row is free would run it twice.

    Burying a workflow's job fires a trigger that marks its workflow dead, which waits for a
    transaction holding that workflow's row. A caller whose sweep gave up on such a wait can
    sweep again with ``pass_dying_workflows``: every other expired lease is rescued, and the
    workflow jobs that would be buried wait for a later sweep.

    The error each rescued attempt records says when it started in ``time_zone`` (the
    project's ``TIME_ZONE``, as the worker passes it), offset shown, as pgjobs shows times.
    Every job buried is returned (``dead_letters``), for its ``job_dead_lettered`` signal.
    """
    cur.execute(
        f"""
        WITH expired AS (
            SELECT id, locked_by, locked_at IS NOT NULL AS started,
                   format('Lease expired: worker %%s stopped heartbeating during attempt %%s '
                          '(started at %%s).', locked_by, attempt,
                          {local_time_text("locked_at")}) AS error,
                   0::float8 AS delay, 'django_pgjobs.exceptions.LeaseExpired' AS exception,
                   NULL::float8 AS took
            FROM pgjobs_job_queue
            WHERE status = 'running' AND lease_expires_at < now()
              AND pg_postmaster_start_time() < now() - make_interval(secs => %(server_up_for)s)
              AND NOT EXISTS (
                  SELECT 1 FROM pgjobs_workers AS w
                  WHERE w.id = pgjobs_job_queue.locked_by
                    AND w.last_heartbeat_at >= now() - make_interval(secs => %(silent)s)
                    AND w.unrenewed @> jsonb_build_array(pgjobs_job_queue.lease_token::text))
              AND NOT (%(pass_dying)s AND job_name LIKE 'pgjobs.workflow:%%'
                       AND locked_at IS NOT NULL AND attempt >= max_attempts)
            ORDER BY lease_expires_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ),
        unstarted AS (
            UPDATE pgjobs_job_queue AS j
            SET {UNDO_CLAIM}, attempt_spared = true
            FROM expired AS e
            WHERE j.id = e.id AND NOT e.started
            RETURNING j.queue
        ),
        failing AS (SELECT id, error, delay, exception, took FROM expired WHERE started),
        {RETRY_OR_BURY_CTES}
        SELECT (SELECT count(*) FROM retried), (SELECT count(*) FROM dead),
               (SELECT count(*) FROM unstarted),
               {notify_queues(_BACK_TO_PENDING)},
               array(SELECT id FROM expired ORDER BY id LIMIT %(named)s),
               array(SELECT DISTINCT coalesce(nullif(locked_by, ''), '?') FROM expired
                     ORDER BY 1 LIMIT %(named)s),
               (SELECT count(DISTINCT coalesce(nullif(locked_by, ''), '?')) FROM expired),
               (SELECT json_agg(json_build_array(b.id, b.job_name, b.queue, b.attempt, b.error,
                                                 e.locked_by) ORDER BY b.id)
                FROM buried AS b JOIN expired AS e ON e.id = b.id)::text
        """,
        {
            "limit": limit,
            "server_up_for": server_up_for,
            "named": NAMED,
            "time_zone": time_zone,
            "silent": silent_seconds,
            "pass_dying": pass_dying_workflows,
        },
    )
    retried, buried, unstarted, _, job_ids, worker_ids, workers, dead = cur.fetchone()
    return Rescued(
        retried=int(retried),
        buried=int(buried),
        unstarted=int(unstarted),
        job_ids=tuple(job_ids),
        worker_ids=tuple(worker_ids),
        workers=int(workers),
        dead_letters=tuple(
            DeadLettered(uuid.UUID(id_), name, queue, attempt, error or "", worker_id or "")
            for id_, name, queue, attempt, error, worker_id in json.loads(dead or "[]")
        ),
    )
