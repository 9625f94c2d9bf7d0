"""A workflow's own row through a run: start, load for a run, suspend; it ends with its job's
completion (queries.completions). An operator's cancel, resume and fork are in
:mod:`.workflow_control`; reads that lock nothing are in :mod:`.workflow_reads`.

A workflow runs as a job (key ``pgjobs.workflow:<id>``), so the job's lease token fences its
writes as it fences a job's outcome: every statement a running workflow makes checks ``(job id,
lease token)`` and does nothing when another worker has taken over (``HOLDS_LEASE``).

Lock order, to stay free of deadlocks: a workflow row before its job row, everywhere.

Statements that may end someone's wait call ``pgjobs_workflow_wake(key)`` (migration 0008); keys
are ``result:<id>``, ``message:<id>:<topic>`` and ``event:<id>:<key>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_pgjobs.queries.base import (
    FENCE,
    HOLDS_LEASE,
    UNDO_CLAIM,
    Cursor,
    Token,
    holds_workflow_job,
    lease_params,
    notify_queues,
    workflow_job_name,
    workflow_key,
)
from django_pgjobs.stored_json import UndecodableJSON, decode_json

# Outside waiters (WorkflowHandle.get_result, get_event) LISTEN here for wake-up keys.
NOTIFY_CHANNEL = "pgjobs_workflow"


def queue_job(source: str, trace: str = "NULL") -> str:
    """The INSERT of the job that runs each workflow of ``source`` (a relation with workflow_id,
    app_version, queue, priority, max_recovery_attempts), ``trace`` its trace_context (SQL; a start
    passes its span's). Its key is how wake-ups, cancels and resumes find it; the first attempt plus
    every recovery attempt may crash before it is buried (and the workflow declared dead). Due at
    now(), the claim's clock, not at the column default's statement_timestamp(): inside a longer
    transaction (a test's) that is later than now(), and never due in it."""
    return f"""
        INSERT INTO pgjobs_job_queue (job_name, payload, queue, priority, max_attempts, key,
                                      scheduled_for, trace_context)
        SELECT {workflow_job_name("s.app_version")},
               jsonb_build_object('workflow_id', s.workflow_id), s.queue, s.priority,
               s.max_recovery_attempts + 1, {workflow_key("s.workflow_id")}, now(), {trace}
        FROM {source} AS s"""


@dataclass(frozen=True)
class Started:
    created: bool  # False: the id was taken, by the workflow ``name``
    name: str | None  # the name of the workflow holding the id (None: its start is in flight)


def start(cur: Cursor, row: dict[str, Any]) -> Started:
    """Create a workflow and its job, unless the id exists.

    Runs in the caller's transaction, so a workflow started inside ``atomic()`` exists only if it
    commits. Locks: the new rows; a concurrent start of the same id waits for the first to end.
    """
    cur.execute(
        f"""
        WITH created AS (
            INSERT INTO pgjobs_workflow_executions
                (workflow_id, name, input, app_version, queue, priority, max_recovery_attempts,
                 parent_workflow_id)
            VALUES (%(workflow_id)s, %(name)s, %(input)s::jsonb, %(app_version)s, %(queue)s,
                    %(priority)s, %(max_recovery_attempts)s, %(parent)s)
            ON CONFLICT (workflow_id) DO NOTHING
            RETURNING workflow_id, app_version, queue, priority, max_recovery_attempts
        ),
        queued AS ({queue_job("created", "%(trace_context)s::jsonb")} RETURNING id)
        SELECT (SELECT count(*) FROM queued),
               (SELECT name FROM pgjobs_workflow_executions WHERE workflow_id = %(workflow_id)s)
        """,
        row,
    )
    created, name = cur.fetchone()
    return Started(created=bool(created), name=name)


def refuse_stray_job(cur: Cursor, *, workflow_id: str | None, token: Token) -> bool:
    """True when the job this attempt holds is not the workflow's own (not keyed for it): then
    this attempt is made its last, so the runner's failure buries it at once. Asked only when
    :func:`load` found nothing to run. Locks the job row."""
    cur.execute(
        f"""
        UPDATE pgjobs_job_queue SET max_attempts = attempt
        WHERE {FENCE} AND NOT coalesce(key = {workflow_key("%(workflow_id)s::text")}, false)
        RETURNING id
        """,
        {"workflow_id": workflow_id, **lease_params(token)},
    )
    return cur.fetchone() is not None


@dataclass(frozen=True)
class Checkpoint:
    index: int
    name: str
    status: str
    output: Any
    error: Any
    wake_at: datetime | None


@dataclass(frozen=True)
class LoadedWorkflow:
    name: str
    input: Any
    wake_seq: int
    checkpoints: dict[int, Checkpoint]

    def undecodable(self) -> str | None:
        """What of it Python cannot decode (SQL stored JSON past its limits), if anything: the
        workflow cannot run, and fails saying so."""
        if isinstance(self.input, UndecodableJSON):
            return f"the workflow's input cannot be decoded: {self.input.error}"
        for c in self.checkpoints.values():
            for what, value in (("output", c.output), ("error", c.error)):
                if isinstance(value, UndecodableJSON):
                    return (
                        f"the recorded {what} of step {c.index} ({c.name!r}) cannot be decoded: "
                        f"{value.error}"
                    )
        return None


def load(cur: Cursor, *, workflow_id: str, token: Token) -> LoadedWorkflow | None:
    """Mark the workflow running and read its input and every checkpoint; one round trip.

    Returns None when there is nothing to run: the workflow finished, was cancelled, this
    attempt no longer holds its job, or the job is not the workflow's own (see
    :func:`refuse_stray_job`). A dead workflow whose job an operator requeued runs again.
    Locks: the workflow row.
    """
    cur.execute(
        f"""
        UPDATE pgjobs_workflow_executions AS w
        SET status = 'running', started_at = coalesce(w.started_at, now()), updated_at = now(),
            completed_at = NULL
        WHERE w.workflow_id = %(workflow_id)s AND w.status IN ('pending', 'running', 'dead')
          AND {holds_workflow_job("w.workflow_id")}
        RETURNING w.name, w.input::text, w.wake_seq, (
            SELECT coalesce(json_agg(json_build_object(
                'i', s.step_index, 'n', s.step_name, 's', s.status, 'o', s.output::text,
                'e', s.error::text, 'w', s.wake_at) ORDER BY s.step_index), '[]')
            FROM pgjobs_workflow_steps AS s WHERE s.workflow_id = w.workflow_id
        )::text
        """,
        {"workflow_id": workflow_id, **lease_params(token)},
    )
    found = cur.fetchone()
    if found is None:
        return None
    checkpoints = {}
    # Outputs and errors come as text and are decoded one by one: a value SQL stored that
    # Python cannot decode spoils only its own checkpoint (see LoadedWorkflow.undecodable).
    for c in json.loads(found[3]):
        wake_at = None if c["w"] is None else datetime.fromisoformat(c["w"])
        output, error = (None if v is None else decode_json(v) for v in (c["o"], c["e"]))
        checkpoints[c["i"]] = Checkpoint(c["i"], c["n"], c["s"], output, error, wake_at)
    return LoadedWorkflow(found[0], decode_json(found[1]), int(found[2]), checkpoints)


@dataclass(frozen=True)
class Suspension:
    held: bool  # False: this attempt no longer holds the job; nothing was written
    due_in: float = 0.0  # seconds until the job is due again


def suspend(
    cur: Cursor, *, workflow_id: str, token: Token, wake_seq: int, wake_at: datetime | None
) -> Suspension:
    """Hand the workflow's job back to the queue until ``wake_at`` (a day at most: waits with
    no deadline look again daily).

    If anything woke the workflow since it was loaded (``wake_seq`` moved on), the job is due
    at once instead. The attempt is undone: waiting is not a crash. Locks: the workflow row,
    then the job row, in that order like every waker; a crash before commit leaves the job
    running until its lease is rescued, which replays the workflow to the same wait.
    """
    cur.execute(
        f"""
        WITH w AS (
            UPDATE pgjobs_workflow_executions
            SET status = 'pending', updated_at = now()
            WHERE workflow_id = %(workflow_id)s AND status IN ('running', 'pending')
              AND {HOLDS_LEASE}
            RETURNING wake_seq
        ),
        j AS (
            UPDATE pgjobs_job_queue AS j
            SET {UNDO_CLAIM},
                scheduled_for = CASE
                    WHEN w.wake_seq <> %(wake_seq)s THEN now()
                    ELSE least(coalesce(%(wake_at)s::timestamptz, 'infinity'),
                               now() + interval '1 day')
                END
            FROM w WHERE {FENCE}
            RETURNING j.queue, extract(epoch FROM j.scheduled_for - now())::float8 AS delay
        )
        SELECT delay, {notify_queues("j", "WHERE delay <= 0")} FROM j
        """,
        {
            "workflow_id": workflow_id,
            "wake_seq": wake_seq,
            "wake_at": wake_at,
            **lease_params(token),
        },
    )
    found = cur.fetchone()
    if found is None:
        return Suspension(held=False)
    return Suspension(held=True, due_in=max(float(found[0]), 0.0))
