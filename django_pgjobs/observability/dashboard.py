"""The admin dashboard's figures.

Every query is bounded, so the page stays fast with millions of rows: queues are listed with a
skip scan of pgjobs_job_queue_claim, per-queue counts stop at ``COUNT_CAP``, and the charts read
only the last hour through the completed_at / failed_at / created_at indexes; workflow counts
per status stop at ``COUNT_CAP`` too. The charts drawn from them are in
:mod:`django_pgjobs.admin.charts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections

from django_pgjobs.conf import conf
from django_pgjobs.models import WorkflowStatus

# Counts above this show as "10,000+": an exact count of a huge backlog is a full index scan.
COUNT_CAP = 10_000
WINDOW_MINUTES = 60


@dataclass
class QueueRow:
    queue: str
    due: int
    scheduled: int
    running: int


@dataclass
class Dashboard:
    now: datetime
    queues: list[QueueRow] = field(default_factory=list)
    dead_letters: int = 0
    live_workers: int = 0
    oldest_due_age: float | None = None
    minutes: list[datetime] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)

    @property
    def total_due(self) -> int:
        return sum(q.due for q in self.queues)

    @property
    def total_running(self) -> int:
        return sum(q.running for q in self.queues)


def capped(value: int) -> str:
    return f"{COUNT_CAP:,}+" if value >= COUNT_CAP else f"{value:,}"


# Distinct queues of pending or running jobs without reading every row: each step jumps to the
# next queue in the index (a "loose index scan").
_QUEUES = """
WITH RECURSIVE queues(queue) AS (
    (SELECT queue FROM pgjobs_job_queue WHERE status = 'pending' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM pgjobs_job_queue AS j
            WHERE j.status = 'pending' AND j.queue > q.queue ORDER BY j.queue LIMIT 1)
    FROM queues AS q WHERE q.queue IS NOT NULL
)
SELECT queue FROM queues WHERE queue IS NOT NULL
UNION
SELECT DISTINCT queue FROM pgjobs_job_queue WHERE status = 'running'
"""

_COUNTS = """
SELECT q.queue,
       (SELECT count(*) FROM (SELECT 1 FROM pgjobs_job_queue
            WHERE status = 'pending' AND queue = q.queue AND scheduled_for <= now()
            LIMIT %(cap)s) AS d),
       (SELECT count(*) FROM (SELECT 1 FROM pgjobs_job_queue
            WHERE status = 'pending' AND queue = q.queue AND scheduled_for > now()
            LIMIT %(cap)s) AS s),
       (SELECT count(*) FROM pgjobs_job_queue WHERE status = 'running' AND queue = q.queue)
FROM unnest(%(queues)s::text[]) AS q(queue)
ORDER BY 1
"""

# Per minute over the last hour: completions, dead letters, and new jobs (for the depth curve).
_PER_MINUTE = """
WITH minutes AS (
    SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => %(window)s - 1),
                           date_trunc('minute', now()), interval '1 minute') AS minute
),
done AS (
    SELECT date_trunc('minute', completed_at) AS minute, count(*) AS n FROM pgjobs_job_queue
    WHERE status = 'completed'
      AND completed_at >= date_trunc('minute', now()) - make_interval(mins => %(window)s - 1)
    GROUP BY 1
),
cancelled AS (
    SELECT date_trunc('minute', completed_at) AS minute, count(*) AS n FROM pgjobs_job_queue
    WHERE status = 'cancelled'
      AND completed_at >= date_trunc('minute', now()) - make_interval(mins => %(window)s - 1)
    GROUP BY 1
),
dead AS (
    SELECT date_trunc('minute', failed_at) AS minute, count(*) AS n FROM pgjobs_failed_jobs
    WHERE failed_at >= date_trunc('minute', now()) - make_interval(mins => %(window)s - 1)
    GROUP BY 1
),
-- Arrivals into the due queue: jobs created in the window that are due by now, counted in the
-- minute they became due (a job scheduled for later has not arrived yet).
arrived AS (
    SELECT date_trunc('minute', greatest(created_at, scheduled_for)) AS minute, count(*) AS n
    FROM pgjobs_job_queue
    WHERE created_at >= date_trunc('minute', now()) - make_interval(mins => %(window)s - 1)
      AND scheduled_for <= now()
    GROUP BY 1
)
SELECT m.minute, coalesce(done.n, 0), coalesce(dead.n, 0), coalesce(arrived.n, 0),
       coalesce(cancelled.n, 0)
FROM minutes AS m
LEFT JOIN done ON done.minute = m.minute
LEFT JOIN cancelled ON cancelled.minute = m.minute
LEFT JOIN dead ON dead.minute = m.minute
LEFT JOIN arrived ON arrived.minute = m.minute
ORDER BY m.minute
"""

_HEADLINES = """
SELECT now(),
       (SELECT count(*) FROM (SELECT 1 FROM pgjobs_failed_jobs LIMIT %(cap)s) AS d),
       (SELECT count(*) FROM pgjobs_workers
        WHERE last_heartbeat_at >= now() - make_interval(secs => %(silent)s)),
       (SELECT extract(epoch FROM now() - min(scheduled_for))::float8 FROM pgjobs_job_queue
        WHERE status = 'pending' AND scheduled_for <= now())
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
    with connections[using or conf.DATABASE].cursor() as cur:
        cur.execute(_WORKFLOW_COUNTS, {"statuses": list(WorkflowStatus.values), "cap": COUNT_CAP})
        return {status: int(count) for status, count in cur.fetchall()}


def load_dashboard(*, using: str | None = None) -> Dashboard:
    """Everything the page shows, in four bounded queries."""
    alias = using or conf.DATABASE
    silent = max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS)
    with connections[alias].cursor() as cur:
        cur.execute(_HEADLINES, {"cap": COUNT_CAP, "silent": silent})
        now, dead_letters, live_workers, lag = cur.fetchone()
        board = Dashboard(now=now, dead_letters=dead_letters, live_workers=live_workers)
        board.oldest_due_age = lag
        queues = _active_queues(cur)
        cur.execute(_COUNTS, {"queues": queues, "cap": COUNT_CAP})
        board.queues = [QueueRow(*row) for row in cur.fetchall()]
        cur.execute(_PER_MINUTE, {"window": WINDOW_MINUTES})
        rows = cur.fetchall()
    board.minutes = [r[0] for r in rows]
    board.completed = [int(r[1]) for r in rows]
    board.dead = [int(r[2]) for r in rows]
    # Depth at the end of each minute, walked back from now: before a minute, the queue held
    # what it holds now, plus what left during that minute, minus what arrived. Approximate:
    # retries and pruning inside the window are not visible in timestamps. Not drawn from a
    # capped total, which would be wrong by an unknown amount.
    board.depth = []
    if all(q.due < COUNT_CAP for q in board.queues):
        depth = board.total_due + board.total_running
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
    with connections[using or conf.DATABASE].cursor() as cur:
        return _active_queues(cur)
