"""Inserting jobs: one row, many rows, and the key's dedup / upsert."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from django_pgjobs.queries.base import (
    ACTIVE,
    KEY_CONFLICT,
    Cursor,
    as_uuid,
    notify_queues,
    uuid_array,
)

# ``trace_context``: the enqueuing span's carrier (django_pgjobs.tracing), JSON text or None.
_INSERT_COLUMNS = (
    "id, job_name, payload, queue, priority, max_attempts, scheduled_for, key, metadata, "
    "partition_key, timeout, trace_context"
)
_INSERT_VALUES = """(
    %(id)s, %(job_name)s, %(payload)s::jsonb, %(queue)s, %(priority)s, %(max_attempts)s,
    COALESCE(%(at)s::timestamptz, now()) + make_interval(secs => %(delay)s), %(key)s,
    COALESCE(%(metadata)s::jsonb, '{}'), %(partition_key)s,
    make_interval(secs => %(timeout)s::float8), %(trace_context)s::jsonb
)"""


def insert_job(cur: Cursor, row: dict[str, Any], *, returning: bool = True) -> uuid.UUID | None:
    """Insert one job; with a key already active, do nothing and return None.

    Locks: the new row only; a conflicting key waits for the transaction that holds it. The AFTER
    INSERT trigger queues a NOTIFY that PostgreSQL delivers at commit, so a rollback wakes no one.
    Without a key nothing can conflict: ``returning=False`` skips reading back the id (the
    caller made it) and returns None.
    """
    sql = f"INSERT INTO pgjobs_job_queue ({_INSERT_COLUMNS}) VALUES {_INSERT_VALUES}"
    if row["key"] is not None:
        sql += f" {KEY_CONFLICT} DO NOTHING"
    if not returning:
        cur.execute(sql, row)
        return None
    cur.execute(sql + " RETURNING id", row)
    found = cur.fetchone()
    return None if found is None else as_uuid(found[0])


def insert_job_stamped(cur: Cursor, row: dict[str, Any]) -> datetime:
    """Insert one job without a key and return the time the queue recorded for it
    (``created_at``: its statement's start), in the same round trip. Locks and wake-up as
    :func:`insert_job`."""
    cur.execute(
        f"INSERT INTO pgjobs_job_queue ({_INSERT_COLUMNS}) VALUES {_INSERT_VALUES} "
        "RETURNING created_at",
        row,
    )
    created: datetime = cur.fetchone()[0]
    return created


def upsert_pending_job(cur: Cursor, row: dict[str, Any]) -> uuid.UUID | None:
    """Insert, or replace the still-pending job holding ``row["key"]`` (pgpm's upsert).

    The replaced job keeps its id and starts afresh (attempt 0, no error; the trace context of
    the enqueue that replaced it). Returns None when the key is held by a running job, which
    this statement leaves alone. Locks: the conflicting row, even a running one, until the
    caller's transaction ends.
    """
    cur.execute(
        f"""
        WITH upserted AS (
            INSERT INTO pgjobs_job_queue ({_INSERT_COLUMNS}) VALUES {_INSERT_VALUES}
            {KEY_CONFLICT} DO UPDATE SET
                job_name = EXCLUDED.job_name, payload = EXCLUDED.payload, queue = EXCLUDED.queue,
                priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
                scheduled_for = EXCLUDED.scheduled_for, metadata = EXCLUDED.metadata,
                partition_key = EXCLUDED.partition_key, timeout = EXCLUDED.timeout,
                trace_context = EXCLUDED.trace_context, attempt = 0, error = NULL,
                error_history = '[]', progress = NULL, progress_message = NULL
            WHERE pgjobs_job_queue.status = 'pending'
            RETURNING id, queue
        )
        -- The insert trigger only sees inserted rows; a replaced job must wake workers too.
        SELECT id, {notify_queues("upserted")} FROM upserted
        """,
        row,
    )
    found = cur.fetchone()
    return None if found is None else as_uuid(found[0])


def find_active_job_by_key(cur: Cursor, key: str) -> uuid.UUID | None:
    """The id of the pending-or-running job holding ``key``, via the partial unique index."""
    cur.execute(f"SELECT id FROM pgjobs_job_queue WHERE key = %s AND status IN {ACTIVE}", [key])
    found = cur.fetchone()
    return None if found is None else as_uuid(found[0])


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

    ``rows["ids"]`` (UUIDs) and ``rows["payloads"]`` (JSON texts) are parallel, and so is
    ``rows["partition_keys"]`` (str or None each) when a handler computes each job's key; the
    other options are shared (``rows["partition_key"]`` when the key is, and
    ``rows["trace_context"]``: the jobs of one call share its enqueue span). They travel as a
    uuid[] literal and JSON arrays, zipped back together by ROWS FROM (which pads an empty
    keys array with NULLs): psycopg's list dumper, a Python call (and a regex) per element, took
    a third of the time of a 50,000-job enqueue_many. The statement-level trigger sends one
    NOTIFY per queue, not one per row.
    """
    keys = rows.get("partition_keys")
    cur.execute(
        """
        INSERT INTO pgjobs_job_queue (id, job_name, payload, queue, priority, max_attempts,
                                      scheduled_for, partition_key, timeout, trace_context)
        SELECT u.id, %(job_name)s, u.payload, %(queue)s, %(priority)s, %(max_attempts)s,
               COALESCE(%(at)s::timestamptz, now()) + make_interval(secs => %(delay)s),
               COALESCE(u.partition_key, %(partition_key)s),
               make_interval(secs => %(timeout)s::float8), %(trace_context)s::jsonb
        FROM ROWS FROM (unnest(%(ids)s::uuid[]), jsonb_array_elements(%(payloads)s::jsonb),
                        jsonb_array_elements_text(%(partition_keys)s::jsonb))
             AS u(id, payload, partition_key)
        """,
        {
            **rows,
            "ids": uuid_array(rows["ids"]),
            "payloads": "[" + ",".join(rows["payloads"]) + "]",
            "partition_keys": "[]" if keys is None else json.dumps(keys),
        },
    )
