"""Every statement that changes a job's state, one small function each.

Each comment says which rows the statement locks, which index it relies on and what a crash at
that point leaves behind. The rule they all follow: a state change is one statement, so it either
happened or it did not, and no row lock is ever held while user code runs.

Fencing: every claim stamps the row with a fresh random ``lease_token``, and a worker must present
``(id, lease_token)`` to complete, fail, release, heartbeat or report progress. A worker whose
lease expired (it was paused, partitioned, or presumed dead) and whose job was rescued, cancelled
or claimed again therefore finds its writes matching no row: it can never overwrite the outcome
of the attempt that took over, even when that attempt runs on the same worker.

Functions take any DB-API cursor (a psycopg cursor or Django's wrapper): enqueueing uses the
caller's Django connection so it joins the caller's transaction; the worker uses its own.
"""

from __future__ import annotations

from django_pgjobs.queries.base import NOTIFY_CHANNEL, ClaimedJob, Cursor, Token
from django_pgjobs.queries.enqueue import (
    detach_key_from_running_job,
    find_active_job_by_key,
    insert_job,
    insert_jobs,
    upsert_pending_job,
)
from django_pgjobs.queries.lease import (
    FailOutcome,
    claim_jobs,
    complete_and_claim,
    complete_jobs,
    fail_job,
    heartbeat,
    release_jobs,
    release_untracked_jobs,
    report_progress,
    rescue_expired_leases,
)
from django_pgjobs.queries.operator import cancel_job, requeue_dead_letter, retry_job
from django_pgjobs.queries.schedules import (
    SCHEDULES_CHANNEL,
    due_schedules,
    fire_tick,
    orphan_undeclared_schedules,
    seconds_until_next_schedule,
    set_next_run,
    upsert_declared_schedule,
)
from django_pgjobs.queries.upkeep import (
    delete_stale_workers,
    deregister_worker,
    prune_finished_jobs,
    seconds_until_next_due,
)

__all__ = [
    "NOTIFY_CHANNEL",
    "SCHEDULES_CHANNEL",
    "ClaimedJob",
    "Cursor",
    "FailOutcome",
    "Token",
    "cancel_job",
    "claim_jobs",
    "complete_and_claim",
    "complete_jobs",
    "delete_stale_workers",
    "deregister_worker",
    "detach_key_from_running_job",
    "due_schedules",
    "fail_job",
    "find_active_job_by_key",
    "fire_tick",
    "heartbeat",
    "insert_job",
    "insert_jobs",
    "orphan_undeclared_schedules",
    "prune_finished_jobs",
    "release_jobs",
    "release_untracked_jobs",
    "report_progress",
    "requeue_dead_letter",
    "rescue_expired_leases",
    "retry_job",
    "seconds_until_next_due",
    "seconds_until_next_schedule",
    "set_next_run",
    "upsert_declared_schedule",
    "upsert_pending_job",
]
