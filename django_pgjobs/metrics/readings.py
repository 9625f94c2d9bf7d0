"""The database's figures that the metrics export, read in one snapshot by bounded statements.

One ``REPEATABLE READ, READ ONLY`` transaction (as the dashboard's), so the figures agree with
each other, and every statement bounded whatever the tables hold:

- jobs by queue and state: a skip scan of ``pgjobs_job_queue_claim`` finds the queues that
  have pending jobs, then each one's priorities (one index descent each, never the jobs between
  them), bounded by queues first: every one of the first ``MAX_SERIES`` queues is counted, with
  its share of ``MAX_PAIRS`` priorities. Within one queue and priority the due jobs are one range
  of that index and the scheduled ones the next, and its oldest job is the range's first entry;
  a queue's due jobs are counted reading at most ``COUNT_CAP`` entries over all its priorities,
  its scheduled ones too (a priority reached once the count is full reads none). A queue's
  priorities past its share are one range, read up to what that leaves; the queues past
  ``MAX_SERIES`` (summed as ``OTHER``) one range, read up to ``COUNT_CAP`` entries. Running
  jobs, as many as workers run, through ``pgjobs_job_lease``;
- dead letters: the newest ``COUNT_CAP`` (``pgjobs_failed_at``), by queue;
- the queues of the ``COUNT_CAP`` jobs that finished last (``pgjobs_job_finished``), exported
  with zeros when nothing else names them, so a drained queue keeps its series (after every
  queue with work within ``MAX_SERIES``);
- workflows per status: the dashboard's capped counts;
- queue rows, schedules: small tables, the first ``MAX_SERIES`` rows by name;
- live workers: ``pgjobs_workers`` holds a row per running worker process.

So a queue of ten million jobs costs what one of ten thousand does; counts stop at
``COUNT_CAP`` (the admin's "10,000+") and the gauge then reads 10,000. Where a bound cuts
series, ``Readings.truncated`` names the metric (``pgjobs_metrics_truncated``): no queue ever
vanishes without it. No prometheus_client
here: :mod:`.collector` turns these into metric families.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections, transaction

from django_pgjobs.conf import conf
from django_pgjobs.database import opens_own_transaction, queue_database
from django_pgjobs.metrics import statements
from django_pgjobs.observability.dashboard import COUNT_CAP, workflow_counts
from django_pgjobs.observability.health import READ_TIMEOUT_MS
from django_pgjobs.observability.schedules import fire_times
from django_pgjobs.queues.declarations import declared_queues

# Queues and schedules exported at most, the first by name: each is a label value, and a
# scrape of tens of thousands of series per metric would cost Prometheus more than it tells.
# The queues past them are summed into one series labelled OTHER; the schedules past them are
# left out. Either way the family's pgjobs_metrics_truncated series says so.
MAX_SERIES = 1000
# The queue label of the sum of the queues past a bound (here and a worker's): no queue can be
# named so (check_name, pgjobs_job_names_not_empty). Prometheus reads it as no label, {queue=""}.
OTHER = ""
# (queue, priority) pairs of pending jobs counted at most, shared equally by the queues and at
# least PRIORITIES_PER_QUEUE each: each pair costs two capped counts, so this bounds the read.
# A queue's priorities past its share are read together, up to COUNT_CAP jobs.
MAX_PAIRS = 5 * MAX_SERIES
PRIORITIES_PER_QUEUE = 5

# The families whose series the bounds above can cut, each with a pgjobs_metrics_truncated
# series; those of queues, cut by MAX_SERIES, or by a queue's priorities past its share holding
# more than COUNT_CAP jobs (those jobs' split into due and scheduled is then a lower bound).
QUEUE_FAMILIES = (
    "pgjobs_jobs", "pgjobs_oldest_due_job_age_seconds", "pgjobs_dead_letters",
    "pgjobs_queue_paused", "pgjobs_queue_fair", "pgjobs_queue_concurrency_limit",
    "pgjobs_queue_worker_concurrency_limit", "pgjobs_queue_rate_limit",
    "pgjobs_queue_rate_period_seconds", "pgjobs_queue_partition_concurrency_limit",
    "pgjobs_queue_partition_rate_limit", "pgjobs_queue_timeout_seconds",
)  # fmt: skip
SCHEDULE_FAMILIES = (
    "pgjobs_schedule_enabled", "pgjobs_schedule_last_fire_timestamp_seconds",
    "pgjobs_schedule_next_fire_timestamp_seconds",
)  # fmt: skip
# A statement of these that runs longer is cancelled: a scrape must never load the database
# (the plans above take milliseconds; this only stops one gone wrong). The health read's bound,
# so that the two halves of a scrape give up alike.
STATEMENT_TIMEOUT_MS = READ_TIMEOUT_MS


@dataclass
class QueueLimits:
    """A ``pgjobs_queues`` row: the flow control in force (None: no such limit)."""

    paused: bool
    fair: bool  # claims take turns between partition keys
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
    # Families of QUEUE_FAMILIES and SCHEDULE_FAMILIES whose series the bounds cut.
    truncated: set[str] = field(default_factory=set)


def read_figures(*, using: str | None = None) -> Readings:
    """Everything the database gauges show, in one snapshot (see the module's docstring)."""
    alias = queue_database(using)
    started = time.monotonic()
    connection = connections[alias]
    outermost = opens_own_transaction(alias)
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
        cur.execute(statements.WORKERS, {"silent": silent, "cap": COUNT_CAP})
        now, live, slots, busy = cur.fetchone()
        readings = Readings(now=now, live_workers=live, slots=int(slots), busy_slots=busy)
        queues = readings.queues
        cur.execute(
            statements.PENDING,
            {
                "cap": COUNT_CAP, "series": MAX_SERIES, "pairs": MAX_PAIRS,
                "priorities": PRIORITIES_PER_QUEUE,
            },
        )  # fmt: skip
        rest = None  # the queues past the first MAX_SERIES, summed (the NULL row)
        past = None  # the last queue counted before them (the database's collation)
        for name, due, scheduled, age, sampled, last in cur.fetchall():
            reading = QueueReading(due=due, scheduled=scheduled, oldest_due_age=age)
            if name is None:
                rest, past = reading, last
            else:
                queues[name] = reading
            if sampled:
                readings.truncated.update(("pgjobs_jobs", "pgjobs_oldest_due_job_age_seconds"))
        cur.execute(statements.RUNNING, {"cap": COUNT_CAP, "series": MAX_SERIES})
        for name, running in cur.fetchall():
            queues.setdefault(name, QueueReading()).running = running
            if running >= COUNT_CAP:
                readings.truncated.add("pgjobs_jobs")
        cur.execute(statements.DEAD_LETTERS, {"cap": COUNT_CAP})
        for name, dead in cur.fetchall():
            queues.setdefault(name, QueueReading()).dead_letters = dead
            readings.dead_letters += dead
        # A queue that has drained keeps its series (zeros), so an absent() alert on a quiet
        # queue does not fire; only the queues of the jobs that finished last, to stay bounded.
        # Named by nothing else so far: a queue with work or a row must never lose its series
        # to these (_fold_queues keeps them last).
        finished_only: set[str] = set()
        cur.execute(statements.FINISHED_QUEUES, {"cap": COUNT_CAP})
        for (name,) in cur.fetchall():
            if name not in queues:
                finished_only.add(name)
                queues[name] = QueueReading()
        # One row more than exported: it says there are others.
        cur.execute(statements.QUEUE_ROWS, {"series": MAX_SERIES + 1})
        for name, *limits in cur.fetchall():
            queues.setdefault(name, QueueReading()).limits = QueueLimits(*limits)
        summed: set[str] = set()  # queues whose pending jobs are in rest
        if past is not None:
            cur.execute(statements.SUMMED, {"names": list(queues), "past": past})
            summed.update(name for (name,) in cur.fetchall())
        cur.execute(statements.SCHEDULES, {"series": MAX_SERIES + 1})
        rows = cur.fetchall()
        readings.schedules = [_schedule(now, *row) for row in rows[:MAX_SERIES]]
        if len(rows) > MAX_SERIES:
            readings.truncated.update(SCHEDULE_FAMILIES)
        readings.workflows = workflow_counts(using=alias)
    _fold_queues(readings, rest, summed, finished_only)
    readings.seconds = time.monotonic() - started
    return readings


def _fold_queues(
    readings: Readings, rest: QueueReading | None, summed: set[str], finished_only: set[str]
) -> None:
    """Keep MAX_SERIES queues, the declared ones first (in ``PGJOBS["QUEUES"]`` or with a row in
    pgjobs_queues: the queues an operator named, whose series should not come and go with the
    names of others), then those with work (pending or running jobs, dead letters), then the
    ``finished_only`` ones, whose zeros only keep a drained queue's series (a thousand of them
    once pushed the queues with jobs into the sum), each group by name; never one of
    ``summed``, whose pending jobs are in ``rest``.
    Sum the others' jobs, and ``rest`` (the pending jobs of queues the read did not list), into
    OTHER, whose limits mean nothing summed and are left out. No queue can be named OTHER (an
    empty name); were one written so by SQL, it would join the sum."""
    queues = readings.queues
    settings_queues = set(declared_queues()[0])

    def order(name: str) -> tuple[bool, bool, str]:
        declared = name in settings_queues or queues[name].limits is not None
        return (not declared, name in finished_only, name)

    names = sorted(set(queues) - summed, key=order)
    if len(names) <= MAX_SERIES and rest is None:
        return
    other = rest or QueueReading()
    folded_names = names[MAX_SERIES:] + sorted(summed)
    if OTHER in names[:MAX_SERIES]:
        folded_names.append(OTHER)
    for name in folded_names:
        folded = queues.pop(name)
        other.due = min(other.due + folded.due, COUNT_CAP)
        other.scheduled = min(other.scheduled + folded.scheduled, COUNT_CAP)
        other.running = min(other.running + folded.running, COUNT_CAP)
        other.dead_letters = min(other.dead_letters + folded.dead_letters, COUNT_CAP)
        other.oldest_due_age = max(other.oldest_due_age, folded.oldest_due_age)
    queues[OTHER] = other
    readings.truncated.update(QUEUE_FAMILIES)


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
