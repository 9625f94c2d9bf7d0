"""A running workflow's steps: checkpoints, the checkpointed built-ins (send, set_event), and
durable waits (sleep, recv, get_event, a child's result).

Every statement here checks that the attempt still holds the workflow's job (``LEASE``) and takes
that job row FOR SHARE, so a rescue (which locks it FOR UPDATE) waits for a checkpoint in flight
instead of racing it. A fenced-out statement writes nothing and says so (``held=False``): the
caller stops, another worker took over. Each result also carries the workflow's status as the
statement saw it, so a cancel is noticed at the next step at no extra round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_pgjobs.exceptions import PayloadNotDecodable
from django_pgjobs.queries.base import FENCE, Cursor, Token, lease_params
from django_pgjobs.stored_json import UndecodableJSON, decode_json

# The attempt that holds the workflow's job, as a relation; FOR SHARE so a rescue waits for us.
LEASE = f"lease AS (SELECT id FROM pgjobs_job_queue WHERE {FENCE} FOR SHARE)"
# The workflow's status, read by the statement that wrote: a cancel shows here.
_STATUS = "(SELECT status FROM pgjobs_workflow_executions WHERE workflow_id = %(workflow_id)s)"

_STEP_COLUMNS = (
    "workflow_id, step_index, step_name, status, output, error, attempts, started_at, completed_at"
)


@dataclass(frozen=True)
class StepWrite:
    """What a fenced statement of a running workflow did."""

    held: bool  # False: this attempt no longer holds the workflow's job; nothing was written
    workflow_status: str = ""  # the workflow's status as the statement saw it


FENCED_OUT = StepWrite(held=False)


@dataclass(frozen=True)
class Recorded(StepWrite):
    output: Any = None  # as stored: replays read jsonb's rendering, so the first run must too


@dataclass(frozen=True)
class Sent(StepWrite):
    sent: bool = False  # False: no workflow has the destination id


@dataclass(frozen=True)
class WaitStarted(StepWrite):
    deadline: datetime | None = None  # None: the wait has no timeout


@dataclass(frozen=True)
class WaitChecked(StepWrite):
    done: bool = False  # the wait is over: what it waited for came, or its deadline passed
    output: Any = None  # what the wait step returns (None when it timed out)


def record_step(cur: Cursor, *, token: Token, step: dict[str, Any]) -> Recorded:
    """Write one step's checkpoint.

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
        RETURNING {_STATUS}, output::text
        """,
        {**step, **lease_params(token)},
    )
    found = cur.fetchone()
    if found is None:
        return Recorded(held=False)
    output = None if found[1] is None else decode_json(found[1])
    return Recorded(held=True, workflow_status=str(found[0]), output=output)


def send_from_step(cur: Cursor, *, token: Token, step: dict[str, Any]) -> Sent:
    """A workflow's send(): the message and the step's checkpoint in one statement, so a
    recovered workflow never sends twice. An unknown destination sends nothing and the
    checkpoint records ``false``. Locks: the job FOR SHARE, the new rows."""
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
        SELECT {_STATUS}, EXISTS (SELECT 1 FROM sent),
               (SELECT count(pgjobs_workflow_wake('message:' || workflow_id || ':' || %(topic)s))
                FROM sent)
        FROM step
        """,
        {**step, **lease_params(token)},
    )
    found = cur.fetchone()
    if found is None:
        return Sent(held=False)
    return Sent(held=True, workflow_status=str(found[0]), sent=bool(found[1]))


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


def set_event_from_step(cur: Cursor, *, token: Token, step: dict[str, Any]) -> StepWrite:
    """A workflow's set_event(): upsert the value and checkpoint the call in one statement.
    Locks: the job FOR SHARE, the new step row, the event row."""
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
        SELECT {_STATUS}, pgjobs_workflow_wake('event:' || %(workflow_id)s || ':' || %(key)s)
        FROM stored
        """,
        {**step, **lease_params(token)},
    )
    found = cur.fetchone()
    return FENCED_OUT if found is None else StepWrite(held=True, workflow_status=str(found[0]))


def register_wait(
    cur: Cursor, *, token: Token, step: dict[str, Any], wait_key: str | None, timeout: float | None
) -> WaitStarted:
    """Insert a waiting step (the start of a durable wait) with its deadline (none when
    ``timeout`` is None). Locks: the job FOR SHARE, the new step row.

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
        RETURNING wake_at, {_STATUS}
        """,
        {**step, **lease_params(token), "wait_key": wait_key, "timeout": timeout},
    )
    found = cur.fetchone()
    if found is None:
        return WaitStarted(held=False)
    return WaitStarted(held=True, workflow_status=str(found[1]), deadline=found[0])


# Ending a durable wait. Each statement completes the waiting step if what it waits for is
# there or its deadline passed, and returns (lease held, step completed, output, workflow
# status). The step row is matched on status 'waiting', so a wait completes once.

# recv(): take the oldest message on the topic and checkpoint it in the same statement, so each
# message is received exactly once. A message a concurrent recv holds is skipped, not waited for;
# none is taken unless the step is still waiting and the lease still held.
RECEIVE_MESSAGE = f"""
WITH {LEASE},
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
),
done AS (
    UPDATE pgjobs_workflow_steps AS s
    SET status = 'completed', output = (SELECT message FROM message), completed_at = now()
    WHERE s.workflow_id = %(workflow_id)s AND s.step_index = %(index)s AND s.status = 'waiting'
      AND EXISTS (SELECT 1 FROM lease)
      AND (EXISTS (SELECT 1 FROM message) OR s.wake_at <= now())
    RETURNING s.output
)
SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM done), (SELECT output::text FROM done),
       {_STATUS}
"""

# sleep(), get_event() and a child's get_result() read state nobody consumes: one statement
# with what the step returns ({output}) and whether the wait is over before its deadline
# ({ready}).
_WAIT_FOR_STATE = f"""
WITH {LEASE},
done AS (
    UPDATE pgjobs_workflow_steps AS s
    SET status = 'completed', output = {{output}}, completed_at = now()
    WHERE s.workflow_id = %(workflow_id)s AND s.step_index = %(index)s AND s.status = 'waiting'
      AND EXISTS (SELECT 1 FROM lease) AND ({{ready}} OR s.wake_at <= now())
    RETURNING s.output
)
SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM done), (SELECT output::text FROM done),
       {_STATUS}
"""

FINISH_SLEEP = _WAIT_FOR_STATE.format(output="NULL::jsonb", ready="false")

READ_AWAITED_EVENT = _WAIT_FOR_STATE.format(
    output="""(SELECT value FROM pgjobs_workflow_events
              WHERE workflow_id = %(target)s AND key = %(key)s)""",
    ready="""EXISTS (SELECT 1 FROM pgjobs_workflow_events
                   WHERE workflow_id = %(target)s AND key = %(key)s)""",
)

# A target that does not exist ends the wait at once with status "missing".
READ_AWAITED_RESULT = _WAIT_FOR_STATE.format(
    output="""coalesce(
        (SELECT jsonb_build_object('status', status, 'output', output, 'error', error)
         FROM pgjobs_workflow_executions WHERE workflow_id = %(target)s
           AND status IN ('completed', 'failed', 'cancelled', 'dead')),
        CASE WHEN NOT EXISTS (SELECT 1 FROM pgjobs_workflow_executions
                              WHERE workflow_id = %(target)s)
             THEN '{"status": "missing"}'::jsonb END)""",
    ready="""(SELECT coalesce(bool_or(status IN ('completed', 'failed', 'cancelled', 'dead')), true)
             FROM pgjobs_workflow_executions WHERE workflow_id = %(target)s)""",
)

_FINISH_WAIT = {
    "sleep": FINISH_SLEEP,
    "recv": RECEIVE_MESSAGE,
    "event": READ_AWAITED_EVENT,
    "result": READ_AWAITED_RESULT,
}


def finish_wait(cur: Cursor, kind: str, *, token: Token, params: dict[str, Any]) -> WaitChecked:
    """End a ``kind`` wait (sleep, recv, event, result) if it is over (see the statements).

    Locks: the job FOR SHARE, the step row, and for recv the consumed message.
    """
    cur.execute(_FINISH_WAIT[kind], {**params, **lease_params(token)})
    held, done, text, status = cur.fetchone()
    if not held:
        return WaitChecked(held=False)
    output = None if text is None else decode_json(text)
    if isinstance(output, UndecodableJSON):
        # Stored by SQL (a message, an event): the wait is over, but the workflow cannot see
        # what it waited for. It fails here, as its replay would (LoadedWorkflow.undecodable).
        raise PayloadNotDecodable(f"what {kind} received cannot be decoded: {output.error}")
    return WaitChecked(held=True, workflow_status=str(status), done=bool(done), output=output)


@dataclass(frozen=True)
class EventValue:
    found: bool
    value: Any = None


def read_event(cur: Cursor, *, workflow_id: str, key: str) -> EventValue:
    """The value a workflow published under ``key``, read from outside a workflow."""
    cur.execute(
        "SELECT value::text FROM pgjobs_workflow_events WHERE workflow_id = %s AND key = %s",
        [workflow_id, key],
    )
    found = cur.fetchone()
    return EventValue(False) if found is None else EventValue(True, decode_json(found[0]))
