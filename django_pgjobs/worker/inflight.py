"""What the worker knows of each attempt it holds, from claim to written outcome."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.jobs.context import AttemptNotes, RunningAttempt
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.jobs.timeouts import AttemptTimeout
from django_pgjobs.observability.display import counted
from django_pgjobs.worker.completer import Completer
from django_pgjobs.worker.outcomes import job_fields, log_no_longer_ours
from django_pgjobs.worker.pool import Task

logger = logging.getLogger("django_pgjobs.worker")


@dataclass
class InFlight:
    job: queries.ClaimedJob
    handler: JobHandler | None
    started_at: float
    attempt: RunningAttempt  # what its handler can ask: cancelled? stopping?
    timeout: AttemptTimeout | None = None  # how long its handler may run (None: for ever)
    task: Task | None = None
    started: bool = False  # set by the handler thread as it begins
    began: float = 0.0  # when it began (monotonic), set with ``started``
    deadline: float | None = None  # began + timeout, set before ``started``
    reported: bool = False  # its outcome was handed to the completer
    # The handler returned and its outcome is being reported: too late to time it out. Set, or
    # ``timed_out`` checked, under the worker's lock, so an attempt is never both.
    settling: bool = False
    timed_out: bool = False  # failed for running past its timeout; its late outcome is dropped
    # Not started: half its short lease was gone when a thread took it (ahead.too_late_to_start).
    # Its thread is free; the loop gives it back with the jobs that waited too long.
    refused: bool = False
    lost_logged: bool = False  # the heartbeat found it no longer ours, and said so
    notes: AttemptNotes | None = None  # what the handler said about its attempt
    took: float | None = None  # seconds its handler ran, once reported (or timed out)
    # Until when its lease surely holds (monotonic, counted from before the statement that
    # granted it was sent), and how long that lease was: a job claimed ahead has a short one
    # (lease.AHEAD_LEASE) until the heartbeat records its start.
    lease_until: float = float("inf")
    lease_granted: float = 0.0

    @classmethod
    def of(
        cls,
        job: queries.ClaimedJob,
        handler: JobHandler | None,
        *,
        stopping: threading.Event,
        timeout: AttemptTimeout | None = None,
    ) -> InFlight:
        """A job just claimed; ``stopping`` is set when its worker is asked to stop."""
        attempt = RunningAttempt(job, stopping=stopping)
        return cls(
            job=job,
            handler=handler,
            started_at=time.monotonic(),
            attempt=attempt,
            timeout=timeout,
        )


def mark_no_longer_ours(held: Iterable[InFlight], lost: Iterable[queries.Token]) -> None:
    """Flag the attempts found to no longer own their jobs (the heartbeat's lost tokens, a
    cancel's NOTIFY), so their handlers' ``is_cancelled()`` says so, and log it once per
    attempt, only while its handler runs: that line is the job's one line for it (the outcome
    dropped later is not logged again, see :func:`~.outcomes.log_outcome`). A finished
    handler's outcome is being written, and the completer says what became of it. (Every
    heartbeat finds the attempt again until the handler ends.)"""
    lost_tokens = set(lost)
    if not lost_tokens:
        return
    for entry in held:
        if entry.job.token not in lost_tokens:
            continue
        entry.attempt.no_longer_ours()
        if not entry.reported and not entry.lost_logged:
            entry.lost_logged = True
            ran = time.monotonic() - entry.began if entry.started else 0.0
            log_no_longer_ours(entry.job, ran=ran)


def mark_cancelled(
    held: dict[queries.Token, InFlight],
    named: Iterable[queries.Token],
    conn: psycopg.Connection[Any] | None,
) -> None:
    """Mark the attempts a cancel's NOTIFY named as no longer ours, once their rows confirm it:
    anyone who can connect can send such a NOTIFY, so the rows are believed, not the message.
    With no connection, the next heartbeat finds them all the same."""
    ours = [token for token in named if token in held]
    if not ours or conn is None or conn.closed:
        return
    with contextlib.suppress(psycopg.Error):
        mark_no_longer_ours(held.values(), queries.no_longer_held(conn.cursor(), tokens=ours))


def hand_back_running(
    held: Iterable[InFlight],
    completer: Completer,
    conn: psycopg.Connection[Any] | None,
    *,
    worker_id: str,
) -> list[uuid.UUID]:
    """At the end of the shutdown grace period: write each attempt whose handler is still
    running as failed (``WorkerShutdown``), due again at once. Returns their job ids. With no
    connection (the database is unreachable), their leases expire and do the same."""
    abandoned = []
    for entry in list(held):
        if entry.task is not None and not entry.started:
            continue  # cancelled before it started; its lease recovers it
        if entry.timed_out:
            continue  # its failure is written or, with the database away, its lease expires
        if entry.took is not None:
            # Finished: its outcome waits for a row another transaction holds (the completer
            # keeps it); unwritten at exit, the job's lease runs out and the rescue runs it again.
            continue
        abandoned.append(entry.job.id)  # its thread is not waited for
        if entry.attempt.is_cancelled():
            # Cancelled or taken over: the job is no longer this attempt's to hand back (its
            # failure would match no row), and its line was logged when the worker found out.
            continue
        job = entry.job
        # What becomes of the job is the outcome's own line (retried, dead-lettered on its last
        # attempt, or dropped if it was cancelled meanwhile): said here, "handing it back" was
        # wrong for the last two.
        logger.error(
            "Job %s (%s) still running after the %ss grace period: its attempt %s/%s fails "
            "(WorkerShutdown).",
            job.id, job.job_name, conf.SHUTDOWN_GRACE, job.attempt, job.max_attempts,
        )  # fmt: skip
        if conn is None:
            continue
        error = (
            f"WorkerShutdown: worker {worker_id} stopped before the handler finished (grace "
            f"period {conf.SHUTDOWN_GRACE}s)."
        )
        with contextlib.suppress(psycopg.Error):
            completer.fail(
                conn, entry.job, error, delay=0, exception="django_pgjobs.exceptions.WorkerShutdown"
            )
    return abandoned


def log_timed_out(entry: InFlight, *, abandoned: int) -> None:
    """An attempt ran past its timeout and its handler thread was abandoned."""
    assert entry.timeout is not None
    logger.error(
        "Job %s %s (attempt %s/%s) ran past its timeout of %s: failed with JobTimeout. Its "
        "handler thread cannot be stopped: it is abandoned, its outcome will be discarded, and a "
        "new thread takes its place (%s still running).",
        entry.job.job_name, entry.job.id, entry.job.attempt, entry.job.max_attempts,
        entry.timeout.describe(), counted(abandoned, "abandoned thread"),
        extra=job_fields(
            entry.job, outcome="timed_out", duration=entry.took, timeout=entry.timeout.seconds
        ),
    )  # fmt: skip
