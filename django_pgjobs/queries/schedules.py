"""Schedule statements: the sync of declarations, the due list, and the tick that fires them.

The tick is where "exactly once however many schedulers run" is enforced: it advances the
schedule's ``next_run_at`` from the value the scheduler read (compare-and-set) and inserts the
tick's jobs in the same statement, only if that update happened. Two schedulers firing the same
tick both run it; the second waits on the row lock, re-checks ``next_run_at`` against the
committed value, matches nothing, and inserts nothing. No leader, no advisory lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django_pgjobs.queries.base import CRON_KEY_PREFIX, KEY_CONFLICT, Cursor, as_uuid

SCHEDULES_CHANNEL = "pgjobs_schedules"

# A schedule a scheduler acts on: enabled, still declared, and its next tick inside its window.
_LIVE = (
    "enabled AND NOT orphaned AND (end_at IS NULL OR next_run_at IS NULL OR next_run_at <= end_at)"
)

_COLUMNS = (
    "name, cron, job_name, payload, queue, priority, partition_key, timezone, start_at, end_at, "
    "catch_up, catch_up_limit, source"
)


def upsert_declared_schedule(cur: Cursor, row: dict[str, Any]) -> str | None:
    """Insert or update one declared schedule by name; untouched when nothing changed. Returns
    ``"created"``, ``"updated"`` or None (untouched).

    ``enabled`` belongs to the operator and is never written here; a declaration coming back
    clears ``orphaned``. Locks the schedule rows it changes.
    """
    cur.execute(
        f"""
        INSERT INTO pgjobs_schedules ({_COLUMNS})
        VALUES (%(name)s, %(cron)s, %(job_name)s, %(payload)s::jsonb, %(queue)s,
                %(priority)s, %(partition_key)s, %(timezone)s, %(start_at)s, %(end_at)s,
                %(catch_up)s, %(catch_up_limit)s, %(source)s)
        ON CONFLICT (name) DO UPDATE SET
            cron = EXCLUDED.cron, job_name = EXCLUDED.job_name, payload = EXCLUDED.payload,
            queue = EXCLUDED.queue, priority = EXCLUDED.priority,
            partition_key = EXCLUDED.partition_key,
            timezone = EXCLUDED.timezone, start_at = EXCLUDED.start_at,
            end_at = EXCLUDED.end_at, catch_up = EXCLUDED.catch_up,
            catch_up_limit = EXCLUDED.catch_up_limit, source = EXCLUDED.source,
            orphaned = false
        WHERE (pgjobs_schedules.name, pgjobs_schedules.cron, pgjobs_schedules.job_name,
               pgjobs_schedules.payload, pgjobs_schedules.queue, pgjobs_schedules.priority,
               pgjobs_schedules.partition_key,
               pgjobs_schedules.timezone, pgjobs_schedules.start_at, pgjobs_schedules.end_at,
               pgjobs_schedules.catch_up, pgjobs_schedules.catch_up_limit,
               pgjobs_schedules.source, pgjobs_schedules.orphaned) IS DISTINCT FROM
              (EXCLUDED.name, EXCLUDED.cron, EXCLUDED.job_name, EXCLUDED.payload,
               EXCLUDED.queue, EXCLUDED.priority, EXCLUDED.partition_key, EXCLUDED.timezone,
               EXCLUDED.start_at, EXCLUDED.end_at, EXCLUDED.catch_up, EXCLUDED.catch_up_limit,
               EXCLUDED.source, false)
        RETURNING xmax = 0
        """,
        row,
    )
    # xmax is 0 on a row this statement inserted; the update of a conflicting row sets it to
    # this transaction's id (PostgreSQL's usual way to tell ON CONFLICT's two outcomes apart).
    found = cur.fetchone()
    if found is None:
        return None
    return "created" if found[0] else "updated"


def orphan_undeclared_schedules(cur: Cursor, *, names: Sequence[str]) -> int:
    """Mark code/settings schedules no longer declared: they stop firing; rows and history stay,
    and the operator's enabled flag is kept for when the declaration comes back."""
    cur.execute(
        """
        UPDATE pgjobs_schedules SET orphaned = true
        WHERE source IN ('code', 'settings') AND NOT orphaned AND name <> ALL(%(names)s::text[])
        RETURNING id
        """,
        {"names": list(names)},
    )
    return len(cur.fetchall())


_DUE_COLUMNS = [
    "now",
    "id",
    "name",
    "cron",
    "job_name",
    "payload",
    "queue",
    "priority",
    "partition_key",
    "timezone",
    "start_at",
    "end_at",
    "catch_up",
    "catch_up_limit",
    "last_run_at",
    "next_run_at",
]


def due_schedules(
    cur: Cursor, *, skip: Sequence[int] = ()
) -> tuple[datetime, list[dict[str, Any]]]:
    """The database's clock, and enabled schedules that are due or need a first fire time.

    Reads pgjobs_schedule_due; takes no locks (the tick's compare-and-set settles races).
    Every row reads back in Python, so one row cannot break the read of the others: its times
    are CHECKed into Python's range (migration 0014) and its payload is read as text, decoded
    per row by the scheduler, which quarantines a row that cannot run.
    """
    cur.execute(
        f"""
        SELECT now(), id, name, cron, job_name, payload::text, queue, priority, partition_key,
               timezone, start_at, end_at, catch_up, catch_up_limit, last_run_at, next_run_at
        FROM pgjobs_schedules
        WHERE {_LIVE} AND (next_run_at IS NULL OR next_run_at <= now())
          AND (next_run_at IS NOT NULL OR end_at IS NULL OR end_at > now())
          AND id <> ALL(%(skip)s::bigint[])
        ORDER BY next_run_at NULLS FIRST
        """,
        {"skip": list(skip)},
    )
    rows = cur.fetchall()
    columns = _DUE_COLUMNS
    if not rows:
        cur.execute("SELECT now()")
        return cur.fetchone()[0], []
    return rows[0][0], [dict(zip(columns, row, strict=True)) for row in rows]


def seconds_until_next_schedule(cur: Cursor, *, skip: Sequence[int] = ()) -> float | None:
    """How long a scheduler may sleep before the next live schedule is due (the index head);
    rows in ``skip`` (quarantined by this scheduler) do not count."""
    cur.execute(
        "SELECT extract(epoch FROM min(next_run_at) - now())::float8 FROM pgjobs_schedules "
        f"WHERE {_LIVE} AND id <> ALL(%s::bigint[])",
        [list(skip)],
    )
    row = cur.fetchone()
    return None if row is None or row[0] is None else max(float(row[0]), 0.0)


def set_next_run(cur: Cursor, *, row: dict[str, Any], next_run_at: datetime | None) -> bool:
    """Give a schedule whose timing was (re)defined its first fire time.

    Compare-and-set on the timing that was read: if the schedule was edited in between, the
    value computed from the old expression is not written (the edit's NOTIFY recomputes it).
    """
    cur.execute(
        """
        UPDATE pgjobs_schedules SET next_run_at = %(next)s
        WHERE id = %(id)s AND next_run_at IS NULL AND cron = %(cron)s
          AND timezone = %(timezone)s AND start_at IS NOT DISTINCT FROM %(start_at)s
          AND end_at IS NOT DISTINCT FROM %(end_at)s
        """,
        {**row, "next": next_run_at},
    )
    return bool(getattr(cur, "rowcount", 0))


def tick_key(name: str, fire_time: str) -> str:
    """The key of a tick's job: one active job per schedule and fire time, in the library's own
    key space (a user's key cannot take it first and swallow the tick)."""
    return f"{CRON_KEY_PREFIX}{name}:{fire_time}"


@dataclass(frozen=True)
class FiredTick:
    advanced: bool  # False: another scheduler fired it first, or the schedule changed; no jobs
    job_ids: list[uuid.UUID]  # the tick's new jobs (a key already taken inserts none)


def fire_tick(
    cur: Cursor,
    *,
    schedule_id: int,
    expected_next_run_at: datetime,
    next_run_at: datetime | None,
    last_run_at: datetime | None,
    job: dict[str, Any],
    fire_times: Sequence[datetime],
    payloads: Sequence[str],
    keys: Sequence[str],
    partition_keys: Sequence[str | None] | None = None,
) -> FiredTick:
    """Advance the schedule from ``expected_next_run_at`` and enqueue its ticks, atomically.

    ``advanced`` is False when another scheduler got there first (or the schedule was edited or
    disabled since it was read): nothing was written. With
    no fire times (missed ticks skipped) it only advances. Locks the schedule row; the job keys
    (:func:`tick_key`) make a duplicate tick impossible even by hand. ``partition_keys``, one
    per fire time (None: no partition), are the ticks' jobs' partition keys.
    """
    cur.execute(
        f"""
        WITH advanced AS (
            UPDATE pgjobs_schedules
            SET next_run_at = %(next)s, last_run_at = COALESCE(%(last)s, last_run_at)
            WHERE id = %(id)s AND enabled AND next_run_at = %(expected)s
            RETURNING id
        ),
        inserted AS (
            INSERT INTO pgjobs_job_queue
                (job_name, payload, queue, priority, max_attempts, key, scheduled_for,
                 partition_key)
            SELECT %(job_name)s, t.payload::jsonb, %(queue)s, %(priority)s, %(max_attempts)s,
                   t.key, t.fire_time, t.partition_key
            FROM advanced,
                 unnest(%(fire_times)s::timestamptz[], %(payloads)s::text[], %(keys)s::text[],
                        %(partition_keys)s::text[])
                     AS t(fire_time, payload, key, partition_key)
            {KEY_CONFLICT} DO NOTHING
            RETURNING id
        )
        SELECT (SELECT count(*) FROM advanced), array(SELECT id FROM inserted)
        """,
        {
            "id": schedule_id,
            "expected": expected_next_run_at,
            "next": next_run_at,
            "last": last_run_at,
            "fire_times": list(fire_times),
            "payloads": list(payloads),
            "keys": list(keys),
            # Shorter than the others (empty): unnest pads it with NULLs.
            "partition_keys": list(partition_keys or []),
            **job,
        },
    )
    advanced, ids = cur.fetchone()
    return FiredTick(advanced=bool(advanced), job_ids=[as_uuid(i) for i in ids or []])
