"""The admin dashboard's figures, in a fixed number of statements whatever the number of queues.

One transaction (``REPEATABLE READ``, read only) so every figure comes from one snapshot: the
queue table, the totals and the depth curve agree. The queue table is one ``GROUP BY queue``
over pending and running jobs (index-only on pgjobs_job_queue_claim for pending jobs, the small
pgjobs_job_lease index for running ones), sorted busiest first and cut at ``QUEUES_SHOWN`` rows
(the page says "and N more"); its cost follows the jobs waiting, not the number of queues. Why
the due jobs of those queues wait is counted by explain_job's classification
(:func:`~django_pgjobs.queries.explain.blocked_counts`) over ``BLOCKED_CAP`` due jobs shared out
between them, each queue's next in claim order: a cost bounded by the cap, not the backlog. The
charts read only the last hour through the completed_at / failed_at / pending jobs' created_at
indexes; dead letters and workflows per status are counted up to ``COUNT_CAP``. The charts drawn
from them are in :mod:`django_pgjobs.admin.charts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections, transaction

from django_pgjobs.conf import conf
from django_pgjobs.database import opens_own_transaction, queue_database
from django_pgjobs.models import WorkflowStatus
from django_pgjobs.observability.status import UnhandledJobs, unhandled_due_jobs
from django_pgjobs.queries.base import PENDING_PRIORITIES, pending_queues
from django_pgjobs.queries.explain import blocked_counts

# Counts above this show as "10,000+": an exact count of a huge table is a full index scan.
COUNT_CAP = 10_000
WINDOW_MINUTES = 60
# Queues listed on the page, busiest first; the rest are summed up as "and N more".
QUEUES_SHOWN = 25
# Paused queues named on the page; a deployment pausing more is told how many.
PAUSED_SHOWN = 50
# Due jobs judged by explain_job's classification per page, shared out between the queues shown
# (the next of each to be claimed): 25 queues get 400 each. Judging costs about 10 us a job.
BLOCKED_CAP = COUNT_CAP


@dataclass
class QueueRow:
    queue: str
    due: int
    scheduled: int
    running: int
    # Seconds since this queue's oldest due job became due; None when nothing is due.
    oldest_due_age: float | None = None
    # Of its first Dashboard.blocked_cap due jobs in claim order, how many each blocker holds
    # back (explain_job's categories; "claimable": none does).
    blocked: dict[str, int] = field(default_factory=dict)


@dataclass
class PausedQueue:
    queue: str
    paused_at: datetime | None


@dataclass
class Dashboard:
    now: datetime
    # The busiest QUEUES_SHOWN queues; the totals below count every queue.
    queues: list[QueueRow] = field(default_factory=list)
    queue_count: int = 0
    total_due: int = 0
    total_scheduled: int = 0
    total_running: int = 0
    dead_letters: int = 0
    live_workers: int = 0
    oldest_due_age: float | None = None
    # Paused queues (pgjobs_queues), the first PAUSED_SHOWN by name, and how many there are.
    paused: list[PausedQueue] = field(default_factory=list)
    paused_count: int = 0
    # How many due jobs of each shown queue QueueRow.blocked judges (BLOCKED_CAP shared out).
    blocked_cap: int = BLOCKED_CAP
    # Due jobs whose name no handler of this deployment claims (see observability.status).
    unhandled: list[UnhandledJobs] = field(default_factory=list)
    minutes: list[datetime] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)

    @property
    def queues_not_shown(self) -> int:
        return self.queue_count - len(self.queues)


def capped(value: int) -> str:
    return f"{COUNT_CAP:,}+" if value >= COUNT_CAP else f"{value:,}"


# Distinct queues of pending or running jobs without reading every row: each step jumps to the
# next queue in the index (a "loose index scan"). Serves the job list's queue filter.
_QUEUES = f"""
WITH RECURSIVE {pending_queues()}
SELECT queue FROM queues WHERE queue IS NOT NULL
UNION
SELECT DISTINCT queue FROM pgjobs_job_queue WHERE status = 'running'
"""

# Pending and running jobs per queue, busiest first: pending jobs read once (a sequential or an
# index-only scan of pgjobs_job_queue_claim, whichever the planner finds cheaper), running ones
# through pgjobs_job_lease. The window sums and count run over every queue before the LIMIT.
_QUEUE_TABLE = """
WITH per_queue AS (
    SELECT queue,
           count(*) FILTER (WHERE scheduled_for <= now()) AS due,
           count(*) FILTER (WHERE scheduled_for > now()) AS scheduled,
           0 AS running,
           min(scheduled_for) FILTER (WHERE scheduled_for <= now()) AS oldest_due
    FROM pgjobs_job_queue WHERE status = 'pending' GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, count(*), NULL FROM pgjobs_job_queue WHERE status = 'running'
    GROUP BY queue
),
queues AS (
    SELECT queue, sum(due)::bigint AS due, sum(scheduled)::bigint AS scheduled,
           sum(running)::bigint AS running, min(oldest_due) AS oldest_due
    FROM per_queue GROUP BY queue
)
SELECT queue, due, scheduled, running,
       extract(epoch FROM now() - oldest_due)::float8,
       count(*) OVER (), sum(due) OVER ()::bigint, sum(scheduled) OVER ()::bigint,
       sum(running) OVER ()::bigint,
       extract(epoch FROM now() - min(oldest_due) OVER ())::float8
FROM queues
ORDER BY due DESC, running DESC, queue
LIMIT %(shown)s
"""

# Per minute over the last hour: completions, dead letters, cancellations (what left the queue)
# and arrivals (what joined it), for the charts and the depth curve, in one pass over each
# source. A job arrives in the minute it became due, greatest(created_at, scheduled_for); a job
# that left before it was due (cancelled early) arrives in the minute it left, so it adds
# nothing to any minute. Every job that left in the window yields its arrival too: a departure
# without its arrival would add a phantom job to every earlier minute. Dead letters keep no
# scheduled_for: they arrive when created.
# The window's first minute, as bounds.since below, written into each range that needs it: a
# value read from a CTE bounds no index scan.
_SINCE = "(date_trunc('minute', now()) - make_interval(mins => %(window)s - 1))"
_PER_MINUTE = f"""
WITH RECURSIVE {PENDING_PRIORITIES},
bounds AS (
    SELECT date_trunc('minute', now()) - make_interval(mins => %(window)s - 1) AS since
),
events AS (
    -- Finished in the window (pgjobs_job_finished): how it left, when, and when it arrived.
    SELECT j.status::text AS kind, date_trunc('minute', j.completed_at) AS left_in,
           date_trunc('minute', least(greatest(j.created_at, j.scheduled_for), j.completed_at))
               AS arrived_in
    FROM pgjobs_job_queue AS j, bounds
    WHERE j.status IN ('completed', 'cancelled') AND j.completed_at >= bounds.since
    UNION ALL
    -- Dead-lettered in the window (pgjobs_failed_at).
    SELECT 'dead', date_trunc('minute', f.failed_at),
           date_trunc('minute', least(f.original_created_at, f.failed_at))
    FROM pgjobs_failed_jobs AS f, bounds WHERE f.failed_at >= bounds.since
    UNION ALL
    -- Still waiting and due, arrived in the window: due in it (a range of pgjobs_job_claim per
    -- priority) or, due before it, created in it (pgjobs_job_pending_created).
    SELECT NULL, NULL, date_trunc('minute', greatest(j.created_at, j.scheduled_for))
    FROM pending_priorities AS p, LATERAL (
        SELECT j.created_at, j.scheduled_for FROM pgjobs_job_queue AS j
        WHERE j.status = 'pending' AND j.priority = p.priority
          AND j.scheduled_for >= {_SINCE} AND j.scheduled_for <= now()
        -- In the claim index's order, and OFFSET 0 so that it stays a range of that index per
        -- priority: flattened into a join, it read every pending job.
        ORDER BY j.priority DESC, j.scheduled_for, j.id
        OFFSET 0
    ) AS j
    WHERE p.priority IS NOT NULL
    UNION ALL
    -- Still waiting, due before the window and created in it: a range of
    -- pgjobs_job_pending_created, the pending jobs created in the window, not every pending job.
    -- (Due before the window and created in it implies due before created: the index's
    -- condition, written out so that the planner can use it.)
    SELECT NULL, NULL, date_trunc('minute', greatest(j.created_at, j.scheduled_for))
    FROM pgjobs_job_queue AS j
    WHERE j.status = 'pending' AND j.scheduled_for < j.created_at
      AND j.created_at >= {_SINCE} AND j.scheduled_for < {_SINCE}
    UNION ALL
    -- Running (pgjobs_job_lease: as many rows as workers run at once).
    SELECT NULL, NULL, date_trunc('minute', greatest(j.created_at, j.scheduled_for))
    FROM pgjobs_job_queue AS j WHERE j.status = 'running'
),
-- One pass: departures per (kind, minute) and arrivals per minute.
counted AS (
    SELECT coalesce(kind, 'arrived') AS kind, coalesce(left_in, arrived_in) AS minute,
           count(*) AS n
    FROM events
    GROUP BY GROUPING SETS ((kind, left_in), (arrived_in))
    HAVING grouping(kind) = 1 OR kind IS NOT NULL
)
SELECT m.minute,
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'completed'), 0),
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'dead'), 0),
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'arrived'), 0),
       coalesce(sum(c.n) FILTER (WHERE c.kind = 'cancelled'), 0)
FROM bounds, generate_series(bounds.since, date_trunc('minute', now()), interval '1 minute')
     AS m(minute)
LEFT JOIN counted AS c ON c.minute = m.minute
GROUP BY m.minute
ORDER BY m.minute
"""

# Run before _PER_MINUTE, in a savepoint rolled back after it. Every range it reads has an
# index made for it; statistics taken before a burst of old jobs (until autovacuum analyzes
# the table again) showed every row created in the window, and the planner read the whole
# table for jobs created in it (tests/queries/test_next_due.py).
PER_MINUTE_SETTINGS = "SELECT set_config('enable_seqscan', 'off', true)"

_HEADLINES = """
SELECT now(),
       (SELECT count(*) FROM (SELECT 1 FROM pgjobs_failed_jobs LIMIT %(cap)s) AS d),
       (SELECT count(*) FROM pgjobs_workers
        WHERE last_heartbeat_at >= now() - make_interval(secs => %(silent)s)),
       -- pgjobs_queues has a row per limited or paused queue: a small table, read whole.
       (SELECT count(*) FROM pgjobs_queues WHERE paused),
       array(SELECT name FROM pgjobs_queues WHERE paused ORDER BY name LIMIT %(paused)s),
       array(SELECT paused_at FROM pgjobs_queues WHERE paused ORDER BY name LIMIT %(paused)s)
"""


# Workflows per status, each count stopped at COUNT_CAP: one short range of the
# pgjobs_workflow_status (status, created_at) index per status, however many workflows finished.
_WORKFLOW_COUNTS = """
SELECT s.status,
       (SELECT count(*) FROM (SELECT 1 FROM pgjobs_workflow_executions AS w
            WHERE w.status = s.status LIMIT %(cap)s) AS c)
FROM unnest(%(statuses)s::text[]) WITH ORDINALITY AS s(status, n)
ORDER BY s.n
"""


def workflow_counts(*, using: str | None = None) -> dict[str, int]:
    """Workflows per status (pending, running, ... dead), each capped at ``COUNT_CAP``."""
    with connections[queue_database(using)].cursor() as cur:
        cur.execute(_WORKFLOW_COUNTS, {"statuses": list(WorkflowStatus.values), "cap": COUNT_CAP})
        return {status: int(count) for status, count in cur.fetchall()}


def load_dashboard(*, using: str | None = None) -> Dashboard:
    """Everything the page shows about jobs, in six statements however many queues there are."""
    alias = queue_database(using)
    silent = max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS)
    connection = connections[alias]
    outermost = opens_own_transaction(alias)
    with transaction.atomic(using=alias), connection.cursor() as cur:
        if outermost:  # (inside a caller's transaction its isolation level stands)
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute(_HEADLINES, {"cap": COUNT_CAP, "silent": silent, "paused": PAUSED_SHOWN})
        now, dead_letters, live_workers, paused_count, paused, paused_at = cur.fetchone()
        board = Dashboard(
            now=now,
            dead_letters=dead_letters,
            live_workers=live_workers,
            paused=[PausedQueue(*row) for row in zip(paused, paused_at, strict=True)],
            paused_count=paused_count,
        )
        cur.execute(_QUEUE_TABLE, {"shown": QUEUES_SHOWN})
        rows = cur.fetchall()
        board.queues = [QueueRow(*row[:5]) for row in rows]
        if rows:
            (
                board.queue_count, board.total_due, board.total_scheduled, board.total_running,
                board.oldest_due_age,
            ) = rows[0][5:]  # fmt: skip
        due = [q.queue for q in board.queues if q.due]
        board.blocked_cap = -(-BLOCKED_CAP // max(len(due), 1))
        blocked = blocked_counts(cur, queues=due, silent_seconds=silent, cap=board.blocked_cap)
        for q in board.queues:
            q.blocked = blocked.get(q.queue, {})
        board.unhandled = unhandled_due_jobs(cur)
        with transaction.atomic(using=alias):
            cur.execute(PER_MINUTE_SETTINGS)
            cur.execute(_PER_MINUTE, {"window": WINDOW_MINUTES})
            rows = cur.fetchall()
            transaction.set_rollback(True, using=alias)  # the setting goes with its savepoint
    board.minutes = [r[0] for r in rows]
    board.completed = [int(r[1]) for r in rows]
    board.dead = [int(r[2]) for r in rows]
    # Depth at the end of each minute, walked back from now: before a minute, the queue held
    # what it holds now, plus what left during that minute, minus what arrived. Approximate:
    # a retry's wait between attempts, a dead letter's scheduled start and jobs pruned inside
    # the window are not in the timestamps; every departure has its arrival, so none of these
    # shifts earlier minutes.
    depth = board.total_due + board.total_running
    board.depth = []
    for done, dead, arrived, cancelled in zip(
        reversed(board.completed), reversed(board.dead), reversed([int(r[3]) for r in rows]),
        reversed([int(r[4]) for r in rows]), strict=True,
    ):  # fmt: skip
        board.depth.append(max(depth, 0))
        depth += done + dead + cancelled - arrived
    board.depth.reverse()
    return board


def _active_queues(cur: Any) -> list[str]:
    cur.execute(_QUEUES)
    return sorted({row[0] for row in cur.fetchall()})


def active_queues(*, using: str | None = None) -> list[str]:
    """Queues that have pending or running jobs (a skip scan: cheap on any table size)."""
    with connections[queue_database(using)].cursor() as cur:
        return _active_queues(cur)
