"""The database's figures that the metrics export, read in one snapshot by bounded statements.

One ``REPEATABLE READ, READ ONLY`` transaction (as the dashboard's), so the figures agree with
each other, and every statement bounded whatever the tables hold:

- jobs by queue and state: a skip scan of ``pgjobs_job_queue_claim`` finds each (queue,
  priority) that has pending jobs (one index descent each, never the jobs between them); within
  one queue and priority the due jobs are one range of that index and the scheduled ones the
  next, so each is counted reading at most ``COUNT_CAP`` entries, and its oldest job is the
  range's first entry. Running jobs, as many as workers run, through ``pgjobs_job_lease``;
- dead letters: the newest ``COUNT_CAP`` (``pgjobs_failed_at``), by queue;
- workflows per status: the dashboard's capped counts;
- queue rows, schedules: small tables, the first ``MAX_SERIES`` rows by name;
- live workers: ``pgjobs_workers`` holds a row per running worker process.

So a queue of ten million jobs costs what one of ten thousand does; counts stop at
``COUNT_CAP`` (the admin's "10,000+") and the gauge then reads 10,000. No prometheus_client
here: :mod:`.collector` turns these into metric families.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections, transaction

from django_pgjobs.conf import conf
from django_pgjobs.observability.dashboard import COUNT_CAP, workflow_counts
from django_pgjobs.observability.schedules import fire_times

# Queues and schedules exported at most, the first by name: each is a label value, and a
# scrape of tens of thousands of series per metric would cost Prometheus more than it tells.
MAX_SERIES = 1000
# (queue, priority) pairs of pending jobs read at most: a few priorities per queue. Each pair
# costs two capped counts, so this bounds the whole read.
MAX_PAIRS = 5 * MAX_SERIES
# A statement of these that runs longer is cancelled: a scrape must never load the database
# (the plans above take milliseconds; this only stops one gone wrong).
STATEMENT_TIMEOUT_MS = 5000


@dataclass
class QueueLimits:
    """A ``pgjobs_queues`` row: the flow control in force (None: no such limit)."""

    paused: bool
    concurrency: int | None
    worker_concurrency: int | None
    rate_limit: int | None
    rate_period: float | None
    partition_concurrency: int | None
    partition_rate_limit: int | None
    timeout: float | None


@dataclass
class QueueReading:
    due: int = 0
    scheduled: int = 0
    running: int = 0
    # Seconds since its oldest due job became due; 0 when nothing is due.
    oldest_due_age: float = 0.0
    # Among the newest COUNT_CAP dead letters.
    dead_letters: int = 0
    limits: QueueLimits | None = None


@dataclass(frozen=True)
class ScheduleReading:
    name: str
    enabled: bool  # and not orphaned: it fires
    last_fire: datetime | None
    # The next tick (stored by the scheduler, or computed when an edit cleared it); None when
    # it will not fire (disabled, window closed, an expression written by SQL that is invalid).
    next_fire: datetime | None


@dataclass
class Readings:
    now: datetime
    queues: dict[str, QueueReading] = field(default_factory=dict)
    dead_letters: int = 0  # capped at COUNT_CAP
    live_workers: int = 0
    slots: int = 0  # handler threads of the live workers
    busy_slots: int = 0  # running jobs held by a live worker
    schedules: list[ScheduleReading] = field(default_factory=list)
    workflows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # how long reading took


# Each (queue, priority) of pending jobs, by a skip scan of pgjobs_job_queue_claim (queue,
# priority DESC, scheduled_for, id): from one pair, the next lower priority of the same queue,
# else the first pair of the next queue; one index descent each. Then, per pair, the due and
# the scheduled jobs are each one range of that index (counted up to the cap), and its oldest
# pending job is the first entry. Summed per queue; the sums stop at the cap too.
_PENDING = """
WITH RECURSIVE pairs(queue, priority) AS (
    (SELECT queue, priority FROM pgjobs_job_queue WHERE status = 'pending'
     ORDER BY queue, priority DESC LIMIT 1)
    UNION ALL
    SELECT coalesce(same.queue, later.queue), coalesce(same.priority, later.priority)
    FROM pairs AS p
    LEFT JOIN LATERAL (
        SELECT j.queue, j.priority FROM pgjobs_job_queue AS j
        WHERE j.status = 'pending' AND j.queue = p.queue AND j.priority < p.priority
        ORDER BY j.priority DESC LIMIT 1
    ) AS same ON true
    LEFT JOIN LATERAL (
        SELECT j.queue, j.priority FROM pgjobs_job_queue AS j
        WHERE same.queue IS NULL AND j.status = 'pending' AND j.queue > p.queue
        ORDER BY j.queue, j.priority DESC LIMIT 1
    ) AS later ON true
    WHERE p.queue IS NOT NULL
),
counted AS (
    SELECT p.queue,
           (SELECT count(*) FROM (
                SELECT 1 FROM pgjobs_job_queue AS j
                WHERE j.status = 'pending' AND j.queue = p.queue AND j.priority = p.priority
                  AND j.scheduled_for <= now()
                LIMIT %(cap)s) AS c) AS due,
           (SELECT count(*) FROM (
                SELECT 1 FROM pgjobs_job_queue AS j
                WHERE j.status = 'pending' AND j.queue = p.queue AND j.priority = p.priority
                  AND j.scheduled_for > now()
                LIMIT %(cap)s) AS c) AS scheduled,
           (SELECT j.scheduled_for FROM pgjobs_job_queue AS j
            WHERE j.status = 'pending' AND j.queue = p.queue AND j.priority = p.priority
            ORDER BY j.scheduled_for LIMIT 1) AS oldest
    FROM (SELECT * FROM pairs WHERE queue IS NOT NULL LIMIT %(pairs)s) AS p
)
SELECT queue, least(sum(due), %(cap)s)::int, least(sum(scheduled), %(cap)s)::int,
       coalesce(extract(epoch FROM now() - min(oldest) FILTER (WHERE oldest <= now())), 0)::float8
FROM counted GROUP BY queue
"""

# Running jobs per queue: pgjobs_job_lease holds only running jobs, as many as the workers'
# slots (plus those of dead workers awaiting rescue).
_RUNNING = """
SELECT queue, count(*)::int FROM (
    SELECT queue FROM pgjobs_job_queue WHERE status = 'running' LIMIT %(cap)s
) AS r GROUP BY queue
"""

# The newest dead letters (pgjobs_failed_at), by queue: exact while there are fewer than the cap.
_DEAD_LETTERS = """
SELECT queue, count(*)::int FROM (
    SELECT queue FROM pgjobs_failed_jobs ORDER BY failed_at DESC LIMIT %(cap)s
) AS d GROUP BY queue
"""

# Live workers (a heartbeat within the silence window), their handler threads, and the running
# jobs they hold (a job held by a silent worker waits for the rescue, in no live slot).
_WORKERS = """
WITH live AS (
    SELECT id, concurrency FROM pgjobs_workers
    WHERE last_heartbeat_at >= now() - make_interval(secs => %(silent)s)
)
SELECT now(), (SELECT count(*) FROM live)::int,
       (SELECT coalesce(sum(greatest(concurrency, 0)), 0) FROM live)::bigint,
       (SELECT count(*) FROM (
            SELECT 1 FROM pgjobs_job_queue AS j JOIN live ON live.id = j.locked_by
            WHERE j.status = 'running' LIMIT %(cap)s) AS b)::int
"""

_QUEUE_ROWS = """
SELECT name, paused, concurrency, worker_concurrency, rate_limit,
       extract(epoch FROM rate_period)::float8, partition_concurrency, partition_rate_limit,
       extract(epoch FROM timeout)::float8
FROM pgjobs_queues ORDER BY name LIMIT %(series)s
"""

_SCHEDULES = """
SELECT name, enabled AND NOT orphaned, last_run_at, next_run_at, cron, timezone, start_at, end_at,
       updated_at
FROM pgjobs_schedules ORDER BY name LIMIT %(series)s
"""


def read_figures(*, using: str | None = None) -> Readings:
    """Everything the database gauges show, in one snapshot (see the module's docstring)."""
    alias = using or conf.DATABASE
    started = time.monotonic()
    connection = connections[alias]
    outermost = not connection.in_atomic_block
    silent = max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS)
    with transaction.atomic(using=alias), connection.cursor() as cur:
        if outermost:
            # For this transaction only; inside a caller's, its own settings stand (a SET
            # LOCAL there would outlive these statements). JIT: the planner's estimate for the
            # capped counts passes jit_above_cost, and compiling them took longer than running
            # them (16 of 45 ms).
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(
                "SELECT set_config('statement_timeout', %s, true), set_config('jit', 'off', true)",
                [str(STATEMENT_TIMEOUT_MS)],
            )
        cur.execute(_WORKERS, {"silent": silent, "cap": COUNT_CAP})
        now, live, slots, busy = cur.fetchone()
        readings = Readings(now=now, live_workers=live, slots=int(slots), busy_slots=busy)
        queues = readings.queues
        cur.execute(_PENDING, {"cap": COUNT_CAP, "pairs": MAX_PAIRS})
        for name, due, scheduled, age in cur.fetchall():
            queues[name] = QueueReading(due=due, scheduled=scheduled, oldest_due_age=age)
        cur.execute(_RUNNING, {"cap": COUNT_CAP})
        for name, running in cur.fetchall():
            queues.setdefault(name, QueueReading()).running = running
        cur.execute(_DEAD_LETTERS, {"cap": COUNT_CAP})
        for name, dead in cur.fetchall():
            queues.setdefault(name, QueueReading()).dead_letters = dead
            readings.dead_letters += dead
        cur.execute(_QUEUE_ROWS, {"series": MAX_SERIES})
        for name, *limits in cur.fetchall():
            queues.setdefault(name, QueueReading()).limits = QueueLimits(*limits)
        cur.execute(_SCHEDULES, {"series": MAX_SERIES})
        readings.schedules = [_schedule(now, *row) for row in cur.fetchall()]
        readings.workflows = workflow_counts(using=alias)
    if len(queues) > MAX_SERIES:
        readings.queues = {name: queues[name] for name in sorted(queues)[:MAX_SERIES]}
    readings.seconds = time.monotonic() - started
    return readings


def _schedule(
    now: datetime,
    name: str,
    enabled: bool,
    last_run_at: datetime | None,
    next_run_at: datetime | None,
    cron: str,
    zone: str,
    start: datetime | None,
    end: datetime | None,
    updated_at: datetime | None,
) -> ScheduleReading:
    next_fire: Any = next_run_at
    if not enabled or (end is not None and next_fire is not None and next_fire > end):
        next_fire = None  # no scheduler fires it (queries.schedules: its window has closed)
    elif next_fire is None:
        # Cleared by an edit (or a new row) until a scheduler computes it, from its clock when
        # it sees the row, which a NOTIFY makes at once. So the first fire after the row last
        # changed: what a running scheduler stores; with none running, a time that passes and
        # shows it. A row written by SQL with an expression no scheduler can read has none.
        since = now if updated_at is None else min(updated_at, now)
        upcoming, _ = fire_times(cron, zone, start=start, end=end, now=since, count=1)
        next_fire = upcoming[0] if upcoming else None
    return ScheduleReading(name, bool(enabled), last_run_at, next_fire)
