"""Writing ``pgjobs_queues``: settings synced in, pause and resume, an operator's limits.

The claim reads these rows (queries.flow); nothing here touches a job. Every write fires the
trigger ``pgjobs_queue_changed`` (migration 0017), which wakes the queue's idle workers at commit,
and ``pgjobs_queue_overridden`` (0024), which keeps ``overridden`` true exactly when an option
(``paused`` or a limit) differs from what the row's ``declared`` gives it: no statement here
writes ``overridden``, and an operator's plain SQL is an override as theirs is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django_pgjobs.queries.base import Cursor

# The limit columns, as SQL casts from a JSON object's text values (seconds for durations).
# Migration 0024's trigger reads ``declared`` with the same casts.
_LIMIT_COLUMNS = {
    "concurrency": "({v})::int",
    "worker_concurrency": "({v})::int",
    "rate_limit": "({v})::int",
    "rate_period": "coalesce(make_interval(secs => ({v})::float8), interval '1 second')",
    "partition_concurrency": "({v})::int",
    "partition_rate_limit": "({v})::int",
    "fair": "coalesce(({v})::boolean, false)",
    "timeout": "make_interval(secs => ({v})::float8)",
}
# The options PGJOBS["QUEUES"] declares: the limits, and whether the queue is paused.
_PAUSED = "coalesce(({v})::boolean, false)"
_DECLARED_COLUMNS = {"paused": _PAUSED, **_LIMIT_COLUMNS}


def _from_json(source: str, columns: Mapping[str, str] = _LIMIT_COLUMNS) -> str:
    """The ``columns`` read from the JSON object ``source`` (an SQL expression)."""
    return ", ".join(cast.format(v=f"{source} ->> '{column}'") for column, cast in columns.items())


def _default(column: str) -> str:
    return {"rate_period": "interval '1 second'", "fair": "false", "paused": "false"}.get(
        column, "NULL"
    )


def _keep_changed(column: str, otherwise: str) -> str:
    """``column`` of row ``q``: kept where an operator made it differ from ``q.declared`` (the
    settings' last sync), else ``otherwise``."""
    declared = _DECLARED_COLUMNS[column].format(v=f"q.declared ->> '{column}'")
    return (
        f"{column} = CASE WHEN q.{column} IS DISTINCT FROM {declared} "
        f"THEN q.{column} ELSE {otherwise} END"
    )


_COLUMNS = ", ".join(_LIMIT_COLUMNS)
_DECLARED_NAMES = ", ".join(_DECLARED_COLUMNS)
# sync_declared_queues: take the new declaration, or go back to no limits when it is removed,
# except in the options an operator changed.
_TAKE_DECLARED = ", ".join(_keep_changed(c, f"EXCLUDED.{c}") for c in _DECLARED_COLUMNS)
_TAKE_DEFAULTS = ", ".join(_keep_changed(c, _default(c)) for c in _DECLARED_COLUMNS)
_TAKE_NEW = ", ".join(f"{c} = EXCLUDED.{c}" for c in _LIMIT_COLUMNS)

# set_queue_limits: the new limits as named columns, what a row without limits holds, and the
# two rows to compare.
_NAMED_FROM_JSON = ", ".join(
    cast.format(v=f"%(limits)s::jsonb ->> '{c}'") + f" AS {c}" for c, cast in _LIMIT_COLUMNS.items()
)
_DEFAULTS = ", ".join(_default(c) for c in _LIMIT_COLUMNS)
_COLUMNS_OF_Q = ", ".join(f"q.{c}" for c in _LIMIT_COLUMNS)
_COLUMNS_OF_EXCLUDED = ", ".join(f"EXCLUDED.{c}" for c in _LIMIT_COLUMNS)
_RESTORE_DECLARED = ", ".join(
    f"{c} = " + cast.format(v=f"%(declared)s::jsonb ->> '{c}'")
    for c, cast in _DECLARED_COLUMNS.items()
)


def sync_declared_queues(cur: Cursor, declared: Mapping[str, Mapping[str, Any]]) -> int:
    """Make the rows match ``PGJOBS["QUEUES"]`` (name -> options: ``paused`` and the limits,
    durations in seconds), and forget declarations that were removed. Returns how many rows
    changed.

    An option an operator changed (it differs from the row's ``declared``, the last sync's) keeps
    its value until it is reset; the others take the new declaration's, and ``declared`` is
    refreshed, so the admin can show and restore the settings' values. So a pause during an
    incident does not stop the next deploy's limits, and a limit an operator set is not lost to
    a deploy. Rows whose ``declared`` is already this one are not touched. Locks the rows it
    changes; many workers starting at once write the same values (last one wins).
    """
    cur.execute(
        f"""
        WITH wanted AS (
            SELECT d.key AS name, d.value AS options FROM jsonb_each(%(declared)s::jsonb) AS d
        ),
        upserted AS (
            INSERT INTO pgjobs_queues AS q (name, declared, {_DECLARED_NAMES})
            SELECT w.name, w.options, {_from_json("w.options", _DECLARED_COLUMNS)}
            FROM wanted AS w
            ON CONFLICT (name) DO UPDATE SET
                declared = EXCLUDED.declared, updated_at = now(), {_TAKE_DECLARED}
            WHERE q.declared IS DISTINCT FROM EXCLUDED.declared
            RETURNING 1
        ),
        forgotten AS (
            -- Removed from settings: the settings' options go with it, an operator's stay.
            UPDATE pgjobs_queues AS q SET declared = NULL, updated_at = now(), {_TAKE_DEFAULTS}
            WHERE q.declared IS NOT NULL AND q.name NOT IN (SELECT name FROM wanted)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM upserted) + (SELECT count(*) FROM forgotten)
        """,
        {"declared": json.dumps(declared)},
    )
    return int(cur.fetchone()[0])


# The caller's settings' limits for the queue (none if it does not declare it), as columns,
# and whether they pause it.
_DECLARED_GIVEN = _from_json("%(declared)s::jsonb")
_PAUSED_GIVEN = _PAUSED.format(v="%(declared)s::jsonb ->> 'paused'")


def set_queue_limits(
    cur: Cursor, name: str, limits: Mapping[str, Any], declared: Mapping[str, Any] | None
) -> bool:
    """An operator's limits for queue ``name`` (every limit column; durations in seconds),
    overriding the settings' until :func:`reset_queue_limits`. Creates the row if needed (paused
    if the settings say so, as a worker's start would create it); never pauses or resumes.

    ``declared`` is the queue's options in the caller's ``PGJOBS["QUEUES"]`` (None if it does
    not name the queue), compared in this statement and written as the row's ``declared``: not
    the row's ``declared``, which is whoever synced last (a worker of the previous deploy, still
    starting, may have written its settings between the caller's sync and this). Limits equal
    to them are no override (the trigger ``pgjobs_queue_overridden`` compares the written row):
    an override in force ends, as :func:`reset_queue_limits` would end it, unless the queue's
    pause differs from the settings too. Returns False, and writes nothing, when nothing would
    change: the row already has these limits and the same override state, or there is no row
    and they are no limits, as the settings' are; an unchanged row fires no wake-up. Locks the
    row it changes (or finds unchanged), found through its primary key. Two operators creating
    the same queue's row at once: one inserts, the other updates or, setting no limits, leaves
    the row as it is. One statement: a crash leaves the row as it was or as asked.
    """
    cur.execute(
        f"""
        WITH wanted AS (SELECT {_NAMED_FROM_JSON})
        INSERT INTO pgjobs_queues AS q (name, declared, paused, {_COLUMNS})
        SELECT %(name)s, %(declared)s::jsonb, {_PAUSED_GIVEN}, {_COLUMNS}
        FROM wanted
        WHERE ({_COLUMNS}) IS DISTINCT FROM ({_DEFAULTS})
           OR ({_COLUMNS}) IS DISTINCT FROM ({_DECLARED_GIVEN})
           OR EXISTS (SELECT 1 FROM pgjobs_queues WHERE name = %(name)s)
        ON CONFLICT (name) DO UPDATE SET updated_at = now(), {_TAKE_NEW},
            declared = EXCLUDED.declared
        WHERE ({_COLUMNS_OF_Q}) IS DISTINCT FROM ({_COLUMNS_OF_EXCLUDED})
           -- The override state the trigger will give the row: does it change?
           OR q.overridden IS DISTINCT FROM (({_COLUMNS_OF_EXCLUDED}, q.paused)
               IS DISTINCT FROM ({_DECLARED_GIVEN}, {_PAUSED_GIVEN}))
        RETURNING 1
        """,
        {
            "name": name,
            "limits": json.dumps(dict(limits)),
            "declared": None if declared is None else json.dumps(dict(declared)),
        },
    )
    return cur.fetchone() is not None


def reset_queue_limits(cur: Cursor, name: str, declared: Mapping[str, Any] | None) -> bool:
    """Drop an operator's override: ``declared`` (the queue's options in the caller's
    ``PGJOBS["QUEUES"]``; None if it does not name it: no limits, not paused) apply again, the
    limits and the pause alike, and are written as the row's ``declared``, in this one statement
    (not read from the row, which whoever synced last wrote). Locks the row through its primary
    key. Returns False if the queue has no row."""
    cur.execute(
        f"""
        UPDATE pgjobs_queues AS q
        SET updated_at = now(), declared = %(declared)s::jsonb, {_RESTORE_DECLARED}
        WHERE name = %(name)s
        """,
        {"name": name, "declared": None if declared is None else json.dumps(dict(declared))},
    )
    return bool(getattr(cur, "rowcount", 0))


def pause_queue(cur: Cursor, name: str) -> bool:
    """``pgjobs_pause()`` (migration 0017): the queue accepts jobs and starts none; jobs already
    running finish. Creates the row if needed. Returns False if it was paused already."""
    cur.execute("SELECT pgjobs_pause(%s)", [name])
    return bool(cur.fetchone()[0])


def resume_queue(cur: Cursor, name: str) -> bool:
    """``pgjobs_resume()``: the paused queue starts jobs again (its idle workers are woken at
    commit). Returns False if it was not paused."""
    cur.execute("SELECT pgjobs_resume(%s)", [name])
    return bool(cur.fetchone()[0])
