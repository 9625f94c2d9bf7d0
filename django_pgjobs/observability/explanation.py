"""What :func:`~django_pgjobs.observability.explain.explain_job` answers: the blockers, checked in
order, and the explanation of one job, with the data behind its sentences."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django_pgjobs.conf import conf
from django_pgjobs.queries import explain as sql
from django_pgjobs.queries.explain import DueJobFacts
from django_pgjobs.worker.connection import ERROR_BACKOFF

# Counting stops here (due jobs ahead of a job, in its queue or key): the admin's cap.
COUNT_CAP = 10_000
# Jobs and workers named in a message; the fields carry the same.
NAMED = 5


class Blocker(StrEnum):
    """What holds a job back, checked in this order; FINISHED and CLAIMABLE: nothing."""

    FINISHED = "finished"  # completed, cancelled or dead-lettered
    RUNNING = "running"  # held by a worker's lease
    SCHEDULED = "scheduled"  # due later
    AWAITING_RETRY = "awaiting_retry"  # an attempt failed; due again later
    PAUSED = sql.PAUSED
    QUEUE_CONCURRENCY = sql.QUEUE_CONCURRENCY
    WORKER_CONCURRENCY = sql.WORKER_CONCURRENCY
    PARTITION_CONCURRENCY = sql.PARTITION_CONCURRENCY
    KEY_ORDER = sql.KEY_ORDER
    RATE_LIMITED = sql.RATE_LIMITED
    NO_WORKER = sql.NO_WORKER
    NO_HANDLER = sql.NO_HANDLER
    KEY_HEAD = sql.KEY_HEAD
    FAIR_TURN = sql.FAIR_TURN
    QUEUE_ORDER = sql.QUEUE_ORDER
    CLAIMABLE = sql.CLAIMABLE

    @property
    def label(self) -> str:
        """A few words for a table cell or a heading."""
        return _LABELS[self]


_LABELS = {
    Blocker.FINISHED: "finished",
    Blocker.RUNNING: "running (held by a worker)",
    Blocker.SCHEDULED: "scheduled for later",
    Blocker.AWAITING_RETRY: "awaiting retry",
    Blocker.PAUSED: "queue paused",
    Blocker.QUEUE_CONCURRENCY: "queue concurrency full",
    Blocker.WORKER_CONCURRENCY: "worker concurrency full",
    Blocker.PARTITION_CONCURRENCY: "partition concurrency full",
    Blocker.KEY_ORDER: "waits for earlier jobs of its key",
    Blocker.RATE_LIMITED: "rate limited",
    Blocker.NO_WORKER: "no live worker serves the queue",
    Blocker.NO_HANDLER: "no live worker has the handler",
    Blocker.KEY_HEAD: "behind an earlier job of its key no worker can run",
    Blocker.FAIR_TURN: "waits for its key's turn",
    Blocker.QUEUE_ORDER: "waits for earlier jobs of its queue",
    Blocker.CLAIMABLE: "claimable now",
}


@dataclass(frozen=True)
class Explanation:
    """Why job ``job_id`` is not running (or that it is, or has finished)."""

    job_id: uuid.UUID
    blocker: Blocker
    # One or more sentences for people; the fields below carry the same for programs.
    message: str
    # pending, running, completed, cancelled, or dead (a dead letter).
    status: str
    job_name: str
    queue: str
    partition_key: str | None = None
    # When the blocker lifts by itself, where it is known: the due time, the rate window's
    # room, the lease's expiry, or the end of the rescuers' start-up hold when a lease has run
    # out and that hold still holds the rescue back (database time, aware).
    until: datetime | None = None
    # The jobs in its way: those running in its queue or key, or its key's earlier jobs.
    blocking_job_ids: tuple[uuid.UUID, ...] = ()
    # RUNNING: the worker holding it (its lease).
    worker_id: str | None = None
    # CLAIMABLE: due jobs its queue's claim order puts before it (in a queue that takes turns,
    # its turn order), counted up to 10,000.
    ahead: int | None = None
    # A due job's counts behind the answer (limits, running, starts, live workers).
    facts: DueJobFacts | None = None

    def __str__(self) -> str:
        return self.message


def silent_seconds() -> float:
    """How long a worker may go without a heartbeat and still count as live: the lease, or
    three heartbeats if longer (as ``pgjobs status``, the dashboard and the admin count)."""
    return max(conf.LEASE_SECONDS, 3 * conf.HEARTBEAT_SECONDS)


def rescue_hold_seconds() -> float:
    """How long a worker rescues nothing after it starts (and after the database server
    restarts): a lease, and at least the longest pause between reconnects plus a heartbeat, so
    workers cut off by an outage renew first. The worker's Housekeeper.hold_seconds is this."""
    return max(conf.LEASE_SECONDS, ERROR_BACKOFF[-1] + conf.HEARTBEAT_SECONDS)
