"""An operator's (or the code's) control over a workflow from outside its run: cancel, resume,
fork. Each is one statement in the caller's transaction; the running attempt, if any, notices at
its next write (its fence or the status that write reads).

Lock order, as in :mod:`.workflow_runs`: a workflow row before its job row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from django_pgjobs.queries.base import (
    ACTIVE,
    CLEAR_LEASE,
    Cursor,
    is_workflow_job,
    notify_queues,
    workflow_job_name,
    workflow_key,
)
from django_pgjobs.queries.workflow_runs import queue_job

# The workflow as it was, its row locked first (a workflow row before its job row, everywhere).
_BEFORE = """before AS (
            SELECT workflow_id, status, name FROM pgjobs_workflow_executions
            WHERE workflow_id = %(workflow_id)s
            FOR UPDATE
        )"""


class Cancelled(NamedTuple):
    before: str  # its status before
    name: str
    ended: bool  # this cancelled it (it was pending or running)


def cancel(cur: Cursor, workflow_id: str) -> Cancelled | None:
    """Cancel a pending or running workflow; None if not found.

    A waiting or queued workflow's job is cancelled with it; a running one stops at its next
    step (its checkpoint write sees the status). Locks: the workflow row, then its job.
    """
    cur.execute(
        f"""
        WITH {_BEFORE},
        cancelled AS (
            UPDATE pgjobs_workflow_executions AS w
            SET status = 'cancelled', completed_at = now(), updated_at = now()
            FROM before WHERE w.workflow_id = before.workflow_id
              AND before.status IN {ACTIVE}
            RETURNING w.workflow_id
        ),
        job AS (
            UPDATE pgjobs_job_queue AS j
            SET status = 'cancelled', completed_at = now()
            FROM cancelled
            WHERE j.key = {workflow_key("cancelled.workflow_id")} AND j.status = 'pending'
        )
        SELECT before.status, before.name, EXISTS (SELECT 1 FROM cancelled),
               (SELECT pgjobs_workflow_wake('result:' || workflow_id) FROM cancelled)
        FROM before
        """,
        {"workflow_id": workflow_id},
    )
    found = cur.fetchone()
    return None if found is None else Cancelled(str(found[0]), str(found[1]), bool(found[2]))


@dataclass(frozen=True)
class Resumed:
    before: str | None  # the status it had (None: no such workflow; nothing was written)
    app_version: str | None  # the version it is pinned to now, when it was resumed
    # Not resumed: its job is still running under a live lease (a cancelled run that has not
    # stopped yet: resuming now would run its current step a second time beside it).
    busy: bool = False


def resume(cur: Cursor, *, workflow_id: str, app_version: str | None) -> Resumed:
    """Queue a cancelled or dead workflow again, or re-pin a pending one.

    With ``app_version`` the workflow is re-pinned to that version (an operator moving it to
    the deployed code). Its job is re-pointed (an attempt whose lease ran out fenced out), or a
    new one queued; a dead workflow's dead letter is removed. Nothing is written while its job
    is running under a live lease (``busy``): a cancelled run stops at its next step, and the
    step it is in would otherwise run again beside it in the resumed run. Locks: the workflow
    row, then its job.
    """
    cur.execute(
        f"""
        WITH {_BEFORE},
        busy AS (
            SELECT 1 FROM pgjobs_job_queue AS j
            WHERE j.key = {workflow_key("%(workflow_id)s::text")} AND j.status = 'running'
              AND j.lease_expires_at > now()
        ),
        resumed AS (
            UPDATE pgjobs_workflow_executions AS w
            SET status = 'pending', completed_at = NULL, updated_at = now(),
                error = CASE WHEN before.status = 'dead' THEN NULL ELSE w.error END,
                app_version = coalesce(%(app_version)s, w.app_version)
            FROM before WHERE w.workflow_id = before.workflow_id
              AND (before.status IN ('cancelled', 'dead')
                   -- A pending one only to re-pin it: nothing else of it is stopped.
                   OR before.status = 'pending' AND %(app_version)s::text IS NOT NULL)
              AND NOT EXISTS (SELECT 1 FROM busy)
            RETURNING w.workflow_id, w.app_version, w.queue, w.priority, w.max_recovery_attempts
        ),
        moved AS (
            -- A still-running attempt (it was cancelled and has not noticed yet) is fenced out
            -- and its job queued afresh: it stops at its next write, the new attempt resumes.
            UPDATE pgjobs_job_queue AS j
            SET status = 'pending', job_name = {workflow_job_name("r.app_version")},
                scheduled_for = now(), attempt = 0, locked_at = NULL, locked_by = NULL,
                {CLEAR_LEASE}
            FROM resumed AS r
            WHERE j.key = {workflow_key("r.workflow_id")} AND j.status IN {ACTIVE}
            RETURNING j.queue
        ),
        queued AS (
            {queue_job("resumed")}
            WHERE NOT EXISTS (
                SELECT 1 FROM pgjobs_job_queue AS j
                WHERE j.key = {workflow_key("s.workflow_id")} AND j.status IN {ACTIVE}
            )
        ),
        undead AS (
            DELETE FROM pgjobs_failed_jobs AS f USING resumed AS r
            WHERE {is_workflow_job("f.job_name")} AND f.payload ->> 'workflow_id' = r.workflow_id
        )
        SELECT before.status, (SELECT app_version FROM resumed), {notify_queues("moved")},
               EXISTS (SELECT 1 FROM busy)
        FROM before
        """,
        {"workflow_id": workflow_id, "app_version": app_version},
    )
    found = cur.fetchone()
    if found is None:
        return Resumed(None, None)
    return Resumed(str(found[0]), found[1], busy=bool(found[3]))


@dataclass(frozen=True)
class Forked:
    source_found: bool
    created: bool  # False: the new id is taken, or from_step is past the recorded steps
    recorded: int = 0  # the index after the source's last recorded step (0: none recorded)


def fork(cur: Cursor, row: dict[str, Any]) -> Forked:
    """Start a copy of a workflow that reuses its checkpoints before ``from_step``.

    Waits in progress are not copied: they start over. Nothing is created when ``from_step``
    is past the step after the source's last recorded one (an index it never reached: a typo,
    not a copy of the whole history). Runs in the caller's transaction. Locks: the new rows.
    """
    cur.execute(
        f"""
        WITH source AS (
            SELECT * FROM pgjobs_workflow_executions WHERE workflow_id = %(source)s
        ),
        recorded AS (
            -- The step after the last recorded one; not a count: a call that raised before
            -- it was recorded (arguments that are not JSON, caught by the workflow) leaves
            -- its index unused.
            SELECT coalesce(max(step_index) + 1, 0) AS steps
            FROM pgjobs_workflow_steps WHERE workflow_id = %(source)s
        ),
        created AS (
            INSERT INTO pgjobs_workflow_executions
                (workflow_id, name, input, app_version, queue, priority, max_recovery_attempts,
                 forked_from)
            SELECT %(workflow_id)s, name, input, coalesce(%(app_version)s, app_version), queue,
                   priority, max_recovery_attempts, workflow_id
            FROM source, recorded WHERE %(from_step)s <= recorded.steps
            ON CONFLICT (workflow_id) DO NOTHING
            RETURNING workflow_id, app_version, queue, priority, max_recovery_attempts
        ),
        copied AS (
            INSERT INTO pgjobs_workflow_steps
                (workflow_id, step_index, step_name, status, output, error, attempts,
                 started_at, completed_at)
            SELECT c.workflow_id, s.step_index, s.step_name, s.status, s.output, s.error,
                   s.attempts, s.started_at, s.completed_at
            FROM created AS c, pgjobs_workflow_steps AS s
            WHERE s.workflow_id = %(source)s AND s.step_index < %(from_step)s
              AND s.status <> 'waiting'
        ),
        queued AS ({queue_job("created")})
        SELECT (SELECT count(*) FROM source), (SELECT count(*) FROM created),
               (SELECT steps FROM recorded)
        """,
        row,
    )
    source, created, recorded = cur.fetchone()
    return Forked(source_found=bool(source), created=bool(created), recorded=int(recorded))
