"""The queue at a glance: counts, dead letters, live workers, paused and limited queues, and
queue lag.

Shared by ``manage.py pgjobs status`` (its lines: :mod:`~django_pgjobs.observability.status_report`)
and the admin dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import connections
from django.db.models.functions import Now

from django_pgjobs.conf import conf
from django_pgjobs.database import queue_database
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import FailedJob, Queue, Worker
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX

# How many workflow ids ``pgjobs status`` names for a code version no worker here runs.
STRANDED_SHOWN = 10
# The limits that can hold a due job back (rate_period alone limits nothing; timeout ends
# attempts, it does not delay starts).
HOLDING_LIMITS = (
    "concurrency",
    "worker_concurrency",
    "rate_limit",
    "partition_concurrency",
    "partition_rate_limit",
)


@dataclass
class QueueCounts:
    due: int = 0
    scheduled: int = 0
    running: int = 0
    completed: int = 0
    cancelled: int = 0


@dataclass
class QueueStatus:
    queues: dict[str, QueueCounts] = field(default_factory=dict)
    dead_letters: int = 0
    live_workers: list[Worker] = field(default_factory=list)
    # Queues paused (their jobs wait on purpose), and queues with a limit that can hold due
    # jobs back (HOLDING_LIMITS), by name; either may have no jobs.
    paused: list[str] = field(default_factory=list)
    limited: list[str] = field(default_factory=list)
    # Seconds since the oldest due job of a queue not paused became due: how far behind the
    # workers are. A paused queue's jobs wait on purpose, so they are left out of it...
    oldest_due_age: float | None = None
    # ... and counted here: the oldest due job of the paused queues.
    oldest_paused_due_age: float | None = None
    # Due jobs whose name has no handler in this codebase (a typo, or code not deployed yet):
    # no worker running this code will ever claim them.
    unhandled: dict[str, int] = field(default_factory=dict)
    # Workflows by status (pending, running, completed, failed, cancelled, dead).
    workflows: dict[str, int] = field(default_factory=dict)
    # For each unhandled workflow job name (a code version no worker here runs): the ids of
    # the first workflows pinned to it, oldest first, due or not.
    stranded_workflows: dict[str, list[str]] = field(default_factory=dict)
    # ... and how many of them wait (a durable sleep, recv(), an event, a child): not due yet,
    # so not in ``unhandled``, but no worker here will run them when they are.
    stranded_waiting: dict[str, int] = field(default_factory=dict)


def queue_status(*, using: str | None = None) -> QueueStatus:
    alias = queue_database(using)
    status = QueueStatus()
    queues = Queue.objects.using(alias).order_by("name")
    for row in queues.only("name", "paused", *HOLDING_LIMITS):
        if row.paused:
            status.paused.append(row.name)
        if any(getattr(row, name) is not None for name in HOLDING_LIMITS):
            status.limited.append(row.name)
    paused = set(status.paused)
    with connections[alias].cursor() as cur:
        # The same scan counts the states and finds each queue's oldest due job (the due
        # state's oldest scheduled_for).
        cur.execute(
            """
            SELECT queue,
                   CASE WHEN status <> 'pending' THEN status
                        WHEN scheduled_for <= now() THEN 'due' ELSE 'scheduled' END,
                   count(*),
                   extract(epoch FROM now() - min(scheduled_for))::float8
            FROM pgjobs_job_queue GROUP BY 1, 2 ORDER BY 1
            """
        )
        ages: dict[bool, list[float]] = {True: [], False: []}
        for queue, state, count, age in cur.fetchall():
            setattr(status.queues.setdefault(queue, QueueCounts()), state, count)
            if state == "due":
                ages[queue in paused].append(float(age))
        status.oldest_due_age = max(ages[False], default=None)
        status.oldest_paused_due_age = max(ages[True], default=None)
        status.unhandled = {found.job_name: found.count for found in unhandled_due_jobs(cur)}
        # Workflows pinned to a code version no worker here runs, whether their jobs are due or
        # wait: one that waits days for a message is stranded as surely as a due one.
        cur.execute(
            "SELECT job_name, (array_agg(payload ->> 'workflow_id' ORDER BY created_at))[1:%s], "
            "count(*) FILTER (WHERE scheduled_for > now()) "
            "FROM pgjobs_job_queue WHERE status = 'pending' AND starts_with(job_name, %s) "
            "AND job_name <> ALL(%s) GROUP BY job_name",
            [STRANDED_SHOWN, WORKFLOW_JOB_PREFIX, registry.names()],
        )
        for name, ids, waiting in cur.fetchall():
            status.stranded_workflows[name] = list(ids)
            if waiting:
                status.stranded_waiting[name] = int(waiting)
        cur.execute("SELECT status, count(*) FROM pgjobs_workflow_executions GROUP BY status")
        status.workflows = dict(cur.fetchall())
    status.dead_letters = FailedJob.objects.using(alias).count()
    silent = timedelta(seconds=max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS))
    status.live_workers = list(
        Worker.objects.using(alias).filter(last_heartbeat_at__gte=Now() - silent)
    )
    return status


@dataclass
class UnhandledJobs:
    """Due jobs of one name that no handler of this deployment claims."""

    job_name: str
    count: int
    # Seconds since the oldest of them became due.
    oldest_due_age: float


# Due jobs whose name is not in the registry, worst first: a scan of the due jobs (nothing indexes
# job_name), so its cost follows the backlog. Status and the dashboard show UNHANDLED_SHOWN names.
UNHANDLED_SHOWN = 20
_UNHANDLED = """
SELECT job_name, count(*), extract(epoch FROM now() - min(scheduled_for))::float8
FROM pgjobs_job_queue
WHERE status = 'pending' AND scheduled_for <= now() AND job_name <> ALL(%(handled)s)
GROUP BY job_name ORDER BY 2 DESC, 1 LIMIT %(shown)s
"""


def unhandled_due_jobs(cur: Any) -> list[UnhandledJobs]:
    """Due jobs no handler of this codebase claims (a typo, code not deployed yet, or a workflow
    pinned to a code version no longer deployed), by name; for ``pgjobs status`` and the
    dashboard. ``cur`` is a cursor on the queue's database."""
    cur.execute(_UNHANDLED, {"handled": registry.names(), "shown": UNHANDLED_SHOWN})
    return [UnhandledJobs(name, int(count), float(age)) for name, count, age in cur.fetchall()]
