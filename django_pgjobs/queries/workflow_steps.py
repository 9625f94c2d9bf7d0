"""A running workflow's steps: checkpoints, the checkpointed built-ins (send, set_event), and
durable waits (sleep, recv, get_event, a child's result).

Every statement here checks that the attempt still holds the workflow's job (``LEASE``) and takes
that job row FOR SHARE, so a rescue (which locks it FOR UPDATE) waits for a checkpoint in flight
instead of racing it. A fenced-out statement writes nothing and returns no status: the caller
stops (another worker took over).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django_pgjobs.queries.base import Cursor, Token, lease_params

# The attempt that holds the workflow's job, as a relation; FOR SHARE so a rescue waits for us.
LEASE = """lease AS (
    SELECT id FROM pgjobs_job_queue
    WHERE id = %(job_id)s AND lease_token = %(token)s AND status = 'running'
    FOR SHARE
)"""

_STEP_COLUMNS = (
    "workflow_id, step_index, step_name, status, output, error, attempts, started_at, completed_at"
)


def record_step(cur: Cursor, *, token: Token, step: dict[str, Any]) -> tuple[str | None, Any]:
    """Write one step's checkpoint; returns (the workflow's status or None if fenced out, the
    output as stored: replays read jsonb's rendering, so the first run must too).

    One round trip per step. Inside an atomic step this runs in the step's transaction, so the
    step's writes and its checkpoint commit together. Locks: the job row FOR SHARE, the new
    step row. A crash before commit loses the checkpoint: the step runs again on recovery.
    """
    cur.execute(
        f"""
        WITH {LEASE}
        INSERT INTO pgjobs_workflow_steps ({_STEP_COLUMNS})
        SELECT %(workflow_id)s, %(index)s, %(name)s, %(status)s, %(output)s::jsonb,
               %(error)s::jsonb, %(attempts)s, %(started_at)s, now()
        FROM lease
        ON CONFLICT (workflow_id, step_index) DO NOTHING
        RETURNING (SELECT status FROM pgjobs_workflow_executions
                   WHERE workflow_id = %(workflow_id)s),
                  output::text
        """,
        {**step, **lease_params(token)},
    )
    found = cur.fetchone()
    if found is None:
        return None, None
    return str(found[0]), None if found[1] is None else json.loads(found[1])


def send_from_step(cur: Cursor, *, token: Token, step: dict[str, Any]) -> tuple[str | None, bool]:
    """A workflow's send(): the message and the step's checkpoint in one statement, so a
    recovered workflow never sends twice. Returns (workflow status or None if fenced out, sent);
    an unknown destination sends nothing and the checkpoint records ``false``."""
    cur.execute(
        f"""
        WITH {LEASE},
        sent AS (
            INSERT INTO pgjobs_workflow_messages (workflow_id, topic, message)
            SELECT w.workflow_id, %(topic)s, %(message)s::jsonb
            FROM pgjobs_workflow_executions AS w, lease
            WHERE w.workflow_id = %(destination)s
            RETURNING workflow_id
        ),
        step AS (
            INSERT INTO pgjobs_workflow_steps ({_STEP_COLUMNS})
            SELECT %(workflow_id)s, %(index)s, %(name)s, 'completed',
                   to_jsonb(EXISTS (SELECT 1 FROM sent)), NULL, 1, %(started_at)s, now()
            FROM lease
            RETURNING 1
        )
        SELECT (SELECT status FROM pgjobs_workflow_executions WHERE workflow_id = %(workflow_id)s),
               EXISTS (SELECT 1 FROM sent),
               (SELECT count(pgjobs_workflow_wake('message:' || workflow_id || ':' || %(topic)s))
                FROM sent)
        FROM step
        """,
        {**step, **lease_params(token)},
    )
    found = cur.fetchone()
    return (None, False) if found is None else (str(found[0]), bool(found[1]))


def send(cur: Cursor, *, destination: str, topic: str, message: str) -> bool:
    """send() from outside a workflow, in the caller's transaction; False if no such workflow."""
    cur.execute(
        """
        WITH sent AS (
            INSERT INTO pgjobs_workflow_messages (workflow_id, topic, message)
            SELECT workflow_id, %(topic)s, %(message)s::jsonb
            FROM pgjobs_workflow_executions WHERE workflow_id = %(destination)s
            RETURNING workflow_id
        )
        SELECT pgjobs_workflow_wake('message:' || workflow_id || ':' || %(topic)s) FROM sent
        """,
        {"destination": destination, "topic": topic, "message": message},
    )
    return cur.fetchone() is not None


def set_event_from_step(cur: Cursor, *, token: Token, step: dict[str, Any]) -> str | None:
    """A workflow's set_event(): upsert the value and checkpoint the call in one statement."""
    cur.execute(
        f"""
        WITH {LEASE},
        step AS (
            INSERT INTO pgjobs_workflow_steps ({_STEP_COLUMNS})
            SELECT %(workflow_id)s, %(index)s, %(name)s, 'completed', NULL, NULL, 1,
                   %(started_at)s, now()
            FROM lease
            RETURNING 1
        ),
        stored AS (
            INSERT INTO pgjobs_workflow_events (workflow_id, key, value)
            SELECT %(workflow_id)s, %(key)s, %(value)s::jsonb FROM step
            ON CONFLICT (workflow_id, key)
            DO UPDATE SET value = EXCLUDED.value, updated_at = now()
            RETURNING 1
        )
        SELECT (SELECT status FROM pgjobs_workflow_executions WHERE workflow_id = %(workflow_id)s),
               pgjobs_workflow_wake('event:' || %(workflow_id)s || ':' || %(key)s)
        FROM stored
        """,
        {**step, **lease_params(token)},
    )
    found = cur.fetchone()
    return None if found is None else str(found[0])


def register_wait(
    cur: Cursor, *, token: Token, step: dict[str, Any], wait_key: str | None, timeout: float | None
) -> tuple[str | None, datetime | None]:
    """Insert a waiting step (the start of a durable wait) with its deadline; returns
    (workflow status or None if fenced out, deadline). ``timeout=None`` waits without one.

    Takes the wait key's advisory lock shared (see migration 0008), so a wake-up for the key
    either happens before this commits (and the caller's next look sees its data) or finds it.
    """
    cur.execute(
        f"""
        WITH {LEASE}
        INSERT INTO pgjobs_workflow_steps
            (workflow_id, step_index, step_name, status, wait_key, wake_at)
        SELECT %(workflow_id)s, %(index)s, %(name)s, 'waiting', %(wait_key)s,
               now() + make_interval(secs => %(timeout)s)
        FROM lease
        LEFT JOIN LATERAL (
            SELECT pg_advisory_xact_lock_shared(hashtext('pgjobs_workflow_wake'),
                                                hashtext(%(wait_key)s))
            WHERE %(wait_key)s::text IS NOT NULL
        ) AS locked ON true
        ON CONFLICT (workflow_id, step_index) DO NOTHING
        RETURNING wake_at, (SELECT status FROM pgjobs_workflow_executions
                            WHERE workflow_id = %(workflow_id)s)
        """,
        {**step, **lease_params(token), "wait_key": wait_key, "timeout": timeout},
    )
    found = cur.fetchone()
    return (None, None) if found is None else (str(found[1]), found[0])


# Completing a waiting step: {ready} says whether the wait is over (besides the deadline
# passing), {output} what the step returns. The step row is matched on status 'waiting', so a
# wait completes once.
_FINISH_WAIT = """
WITH {lease}{extra}
done AS (
    UPDATE pgjobs_workflow_steps AS s
    SET status = 'completed', output = {output}, completed_at = now()
    WHERE s.workflow_id = %(workflow_id)s AND s.step_index = %(index)s AND s.status = 'waiting'
      AND EXISTS (SELECT 1 FROM lease) AND ({ready} OR s.wake_at <= now())
    RETURNING s.output
)
SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM done), (SELECT output::text FROM done),
       (SELECT status FROM pgjobs_workflow_executions WHERE workflow_id = %(workflow_id)s)
"""

_RECV_EXTRA = """,
message AS (
    DELETE FROM pgjobs_workflow_messages
    WHERE id = (
        SELECT id FROM pgjobs_workflow_messages
        WHERE workflow_id = %(workflow_id)s AND topic = %(topic)s
        ORDER BY id LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AND EXISTS (
        SELECT 1 FROM pgjobs_workflow_steps AS s, lease
        WHERE s.workflow_id = %(workflow_id)s AND s.step_index = %(index)s
          AND s.status = 'waiting'
    )
    RETURNING message
),"""

_WAITS = {
    "sleep": ("", "NULL::jsonb", "false"),
    "recv": (
        _RECV_EXTRA,
        "(SELECT message FROM message)",
        "EXISTS (SELECT 1 FROM message)",
    ),
    "event": (
        ",",
        """(SELECT value FROM pgjobs_workflow_events
            WHERE workflow_id = %(target)s AND key = %(key)s)""",
        """EXISTS (SELECT 1 FROM pgjobs_workflow_events
                   WHERE workflow_id = %(target)s AND key = %(key)s)""",
    ),
    # A target that does not exist ends the wait at once with status "missing".
    "result": (
        ",",
        """coalesce(
            (SELECT jsonb_build_object('status', status, 'output', output, 'error', error)
             FROM pgjobs_workflow_executions WHERE workflow_id = %(target)s
               AND status IN ('completed', 'failed', 'cancelled', 'dead')),
            CASE WHEN NOT EXISTS (SELECT 1 FROM pgjobs_workflow_executions
                                  WHERE workflow_id = %(target)s)
                 THEN '{"status": "missing"}'::jsonb END)""",
        """(SELECT coalesce(bool_or(status IN ('completed', 'failed', 'cancelled', 'dead')), true)
            FROM pgjobs_workflow_executions WHERE workflow_id = %(target)s)""",
    ),
}


def finish_wait(
    cur: Cursor, kind: str, *, token: Token, params: dict[str, Any]
) -> tuple[str | None, bool, Any]:
    """Complete a waiting step if what it waits for is there or its deadline passed.

    Returns (workflow status, or None if this attempt lost its lease; completed; output). For
    recv the message is deleted in the same statement that checkpoints it: received once.
    Locks: the job FOR SHARE, the step row, and the consumed message (skipping one a concurrent
    recv holds).
    """
    extra, output, ready = _WAITS[kind]
    cur.execute(
        _FINISH_WAIT.format(lease=LEASE, extra=extra or ",", output=output, ready=ready),
        {**params, **lease_params(token)},
    )
    held, done, text, status = cur.fetchone()
    return (
        str(status) if held else None,
        bool(done),
        None if text is None else json.loads(text),
    )


def read_event(cur: Cursor, *, workflow_id: str, key: str) -> tuple[bool, Any]:
    cur.execute(
        "SELECT value::text FROM pgjobs_workflow_events WHERE workflow_id = %s AND key = %s",
        [workflow_id, key],
    )
    found = cur.fetchone()
    return (False, None) if found is None else (True, json.loads(found[0]))
