"""Moving the clock for tests: what would be due later becomes due now.

django-pgjobs takes every time from PostgreSQL's ``now()``, which a test cannot set (and which,
inside a ``TestCase``'s transaction, stands still at the transaction's start). So
:func:`advance` moves the rows instead: every deadline that waits on the clock moves earlier by
the same amount, one statement per table, and what falls due is then run by
:func:`~django_pgjobs.testing.drain` (or a worker). The deadlines are:

- ``pgjobs_job_queue.scheduled_for`` of pending jobs: delayed jobs, retries waiting out their
  backoff, and suspended workflows' jobs (due at their wait's deadline);
- ``pgjobs_workflow_steps.wake_at`` of waiting steps: a durable ``sleep()``'s end, and the
  timeout of ``recv()``, ``get_event()`` or a child's ``get_result()``. The workflow compares it
  with ``now()`` when it runs again, so moving its job alone would only make it suspend anew.

Schedules are not moved: the scheduler fires the ticks its cron expression has between the
stored ``next_run_at`` and ``now()``, so an earlier ``next_run_at`` would fire a past tick (or
one already fired), never the next one. Enqueue a schedule's job with ``run_schedule_now(name)``
instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.db import connections

from django_pgjobs.database import queue_database

# Each deadline moves earlier by the interval, never before the earliest time a column may hold
# (the range CHECKs of migration 0014).
_JOBS = """
UPDATE pgjobs_job_queue
SET scheduled_for = greatest(scheduled_for - make_interval(secs => %s),
                             '0002-01-01 00:00:00+00'::timestamptz)
WHERE status = 'pending'
"""
_WAITS = """
UPDATE pgjobs_workflow_steps
SET wake_at = greatest(wake_at - make_interval(secs => %s), '0002-01-01 00:00:00+00'::timestamptz)
WHERE status = 'waiting' AND wake_at IS NOT NULL
"""


@dataclass(frozen=True)
class Advanced:
    """How many rows :func:`advance` moved."""

    jobs: int  # pending jobs
    waits: int  # waiting workflow steps with a deadline


def advance(by: float | timedelta, *, using: str | None = None) -> Advanced:
    """Make due what would be due ``by`` later (seconds, or a timedelta): pending jobs and the
    deadlines of workflows' waits move earlier by that much.

    It moves rows; it does not change ``now()``. So a job enqueued afterwards is not affected,
    ``created_at``-style timestamps stay as they were, and a handler reading the time sees the
    real one. Runs on Django's connection, inside the test's transaction if there is one.
    """
    seconds = by.total_seconds() if isinstance(by, timedelta) else by
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"advance() takes seconds or a timedelta, not {type(by).__name__}.")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"advance() moves the clock forward: {by!r} is not >= 0 and finite.")
    with connections[queue_database(using)].cursor() as cur:
        cur.execute(_JOBS, [float(seconds)])
        jobs = cur.rowcount
        cur.execute(_WAITS, [float(seconds)])
        waits = cur.rowcount
    return Advanced(jobs=jobs, waits=waits)
