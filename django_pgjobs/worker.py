"""The worker: claim -> run -> complete / retry / bury, plus its background duties.

One loop thread owns the worker's database connection and issues every queue statement;
handler threads only run user code and report back through an in-memory event queue. That keeps
all SQL in :mod:`django_pgjobs.queries`, lets completions be written in batches, and means a
handler can never hold, break or join the connection that holds the leases.

Background duties run from the same loop: heartbeat (renews this worker's row and leases),
rescue (hands back jobs of dead workers), and prune (deletes finished jobs past RETENTION).
Every attempt the worker holds is tracked by its lease token, never by job id alone: the same
job can come back to the same worker as a new attempt while a stale one is still finishing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import psycopg
from django.db import connections

from django_pgjobs import queries, thread_connections
from django_pgjobs.conf import conf
from django_pgjobs.connection import connect
from django_pgjobs.execution import JobHandedBack, ProgressReporter, call_handler, describe_error
from django_pgjobs.housekeeping import Housekeeper
from django_pgjobs.outcomes import Outcomes, Written
from django_pgjobs.pool import HandlerPool, Task
from django_pgjobs.registry import JobHandler, registry
from django_pgjobs.retry import backoff_delay
from django_pgjobs.scheduler import Scheduler
from django_pgjobs.wakeup import Wakeup, Woken

logger = logging.getLogger("django_pgjobs.worker")

_ERROR_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
# Prefetch: claim enough beyond the free slots to keep them busy this long, judged from how long
# recent jobs took (at most PGJOBS["PREFETCH"] jobs): many short jobs per claim, no hoarding of
# long ones that another worker could start now.
_PREFETCH_HORIZON = 0.05
# Completions are written in batches: when this many are waiting, when the oldest has waited
# this long, or when no handler is busy.
_FLUSH_BATCH = 200
_FLUSH_DELAY = 0.01
# A due job the claim skipped is row-locked by another transaction: look again after this.
_LOCKED_ROW_RECHECK = 0.25
# The worker's statements wait at most this long for a row an application transaction holds,
# then give up and retry later instead of stalling heartbeats behind it.
_LOCK_TIMEOUT = "2s"


@dataclass
class WorkerStats:
    """What a worker (or one ``run_once``) did; tests assert on these."""

    claimed: int = 0
    completed: int = 0
    retried: int = 0
    buried: int = 0
    lost: int = 0
    handed_back: int = 0  # workflows that suspended themselves (sleep, recv, a child's result)
    rescued: int = 0
    released: int = 0
    db_errors: int = 0

    def __sub__(self, other: WorkerStats) -> WorkerStats:
        return WorkerStats(**{k: getattr(self, k) - getattr(other, k) for k in vars(self)})


@dataclass
class _InFlight:
    job: queries.ClaimedJob
    handler: JobHandler | None
    started_at: float
    task: Task | None = None
    started: bool = False  # set by the handler thread as it begins
    done: bool = False  # the handler returned; its outcome may not be written yet


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs jobs from the given queues (all when empty) with ``concurrency`` handler threads.

    ``run()`` loops until stopped (or, with ``burst``, until nothing is due); ``run_once()``
    does one claim-and-run cycle and returns what it did, for tests and embedding.
    """

    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        poll_interval: float | None = None,
        worker_id: str | None = None,
        max_jobs: int | None = None,
        using: str | None = None,
        listen: bool | None = None,
        scheduler: bool = False,
    ) -> None:
        self.queues = sorted(set(queues or ()))
        self.concurrency = concurrency if concurrency is not None else conf.CONCURRENCY
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.poll_interval = poll_interval if poll_interval is not None else conf.POLL_INTERVAL
        self.worker_id = worker_id or default_worker_id()
        self.max_jobs = max_jobs
        self.alias = using or conf.DATABASE
        self.listen = (not conf.POLL_ONLY) if listen is None else listen
        self.stats = WorkerStats()
        # With scheduler=True, a thread fires due schedule ticks while the worker runs.
        self.scheduler = (
            Scheduler(using=self.alias, poll_interval=self.poll_interval) if scheduler else None
        )
        # Job ids whose handlers were still running when the shutdown grace period ended.
        self.abandoned: list[uuid.UUID] = []

        self._conn: psycopg.Connection[Any] | None = None
        self._connected_before = False
        self._pool: HandlerPool | None = None
        self._inflight: dict[uuid.UUID, _InFlight] = {}  # by lease token
        self._wakeup = Wakeup()
        self._outcomes = Outcomes(wake=self._wakeup.ring)
        self._housekeeper = Housekeeper(
            worker_id=self.worker_id, queues=self.queues, concurrency=self.concurrency
        )
        self._stopping = threading.Event()
        self._stop_signal: int | None = None
        self._consecutive_errors = 0
        self._closed = False
        self._maybe_work = True
        self._next_due: float | None = None
        # Moving average of handler run time, for sizing prefetch (None until a job ran).
        self._average_run: float | None = None
        # Jobs handed to handler threads whose handler has not returned (or been cancelled).
        self._busy = 0
        self._busy_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> WorkerStats:
        """Process jobs until stopped; with ``burst``, exit once nothing due is left."""
        self._open()
        scheduling = self._start_scheduler()
        try:
            while not self._stopping.is_set():
                try:
                    self._ensure_connected()
                    # Heartbeat first: a write that keeps failing must not starve the leases.
                    self._housekeep()
                    self._flush()
                    self._consecutive_errors = 0
                    if self._stopping.is_set() or (self._max_jobs_reached() and not self._inflight):
                        break
                    if self._fill_slots():
                        continue
                    if burst and self._drained():
                        break
                    self._wait(self._idle_timeout())
                except psycopg.Error as exc:
                    self._on_database_error(exc)
            self._shutdown()
        finally:
            if scheduling is not None and self.scheduler is not None:
                self.scheduler.request_stop()
                scheduling.join(timeout=10)  # a daemon thread: never hold the exit for it
            self._close()
        return self.stats

    def _start_scheduler(self) -> threading.Thread | None:
        if self.scheduler is None:
            return None
        thread = threading.Thread(
            target=self.scheduler.run, name=f"pgjobs-scheduler-{self.worker_id}", daemon=True
        )
        thread.start()
        return thread

    def run_once(self) -> WorkerStats:
        """One cycle: heartbeat and rescue, claim what is due for free slots, run it to the end,
        write the outcomes. Returns what this cycle did."""
        before = WorkerStats(**vars(self.stats))
        self._open()
        self._ensure_connected()
        self._housekeep(force=True)
        self._maybe_work = True
        self._fill_slots(prefetch=False)
        assert self._pool is not None
        self._pool.wait_idle()
        self._flush(force=True)
        return self.stats - before

    def close(self) -> None:
        """Deregister and release the connection and threads kept between ``run_once`` calls."""
        self._close()
        if not self._closed:
            self._wakeup.close()
            self._closed = True

    def request_stop(self) -> None:
        """Stop claiming and shut down gracefully. Safe from a signal handler or another thread."""
        self._stopping.set()
        self._wake()

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM/SIGINT: graceful stop. A second one: exit at once; leases recover the jobs.

        Returns a function that puts the previous handlers back.
        """

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only async-signal-safe work here: the loop thread logs and shuts down.
            if self._stop_signal is not None:
                os.write(2, b"pgjobs: second signal, exiting now; leases will recover jobs\n")
                os._exit(1)
            self._stop_signal = signum
            self.request_stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    # -- lifecycle ---------------------------------------------------------------------------

    def _open(self) -> None:
        if self._pool is None:
            self._pool = HandlerPool(
                self.concurrency,
                name=f"pgjobs-{self.worker_id}",
                # Handler threads keep their connections between jobs; each closes its own
                # (Django connections are per thread) as it exits.
                on_thread_exit=connections.close_all,
            )

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                queries.deregister_worker(self._conn.cursor(), worker_id=self.worker_id)
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
        if self._pool is not None:
            for entry in self._inflight.values():
                if entry.task is not None:
                    self._pool.cancel(entry.task)
            # Handlers that outlived the grace period were handed back: do not wait for them.
            self._pool.shutdown(wait=not self.abandoned)
            self._pool = None

    def _ensure_connected(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = connect(self.alias, application_name=f"pgjobs worker {self.worker_id}")
        if self.listen:
            # Session settings are unsafe behind PgBouncer in transaction mode (POLL_ONLY).
            conn.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
            conn.execute(f"LISTEN {queries.NOTIFY_CHANNEL}")
        if self._connected_before:
            released = queries.release_untracked_jobs(
                conn.cursor(), worker_id=self.worker_id, tracked=self._held_tokens()
            )
            if released:
                logger.warning("Gave back %s jobs claimed while the connection dropped", released)
                self.stats.released += released
        self._conn = conn
        self._connected_before = True
        self._housekeeper.heartbeat_soon()
        self._maybe_work = True
        logger.info("Worker %s connected (queues: %s)", self.worker_id, self.queues or "all")
        return conn

    def _on_database_error(self, exc: psycopg.Error, *, deadline: float | None = None) -> None:
        """Back off after a failed statement; reconnect only if the connection itself is gone.

        Lock timeouts, serialization failures and the like leave the connection usable: the
        unwritten outcomes stay queued and are retried after the pause.
        """
        self.stats.db_errors += 1
        self._consecutive_errors += 1
        broken = self._conn is None or self._conn.closed or self._conn.broken
        logger.error(
            "Database error in worker %s (%s): %s",
            self.worker_id,
            "reconnecting" if broken else "will retry",
            exc,
        )
        if broken and self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
        delay = _ERROR_BACKOFF[min(self._consecutive_errors, len(_ERROR_BACKOFF)) - 1]
        if deadline is not None:
            delay = min(delay, max(deadline - time.monotonic(), 0.0))
        if self._stopping.is_set():
            time.sleep(delay)  # shutting down: still pace the retries
        else:
            self._stopping.wait(delay)

    def _shutdown(self) -> None:
        """Give back what never started, let running handlers finish within the grace period,
        hand back whatever is still running after it."""
        if self._stop_signal is not None:
            logger.warning(
                "Received %s: finishing running jobs (up to %ss), then exiting. "
                "Send it again to exit at once.",
                signal.Signals(self._stop_signal).name,
                conf.SHUTDOWN_GRACE,
            )
        pool = self._pool
        unstarted = [e for e in self._inflight.values() if pool and e.task and pool.cancel(e.task)]
        self._count_busy(-len(unstarted))
        grace_ends = time.monotonic() + conf.SHUTDOWN_GRACE
        while self._inflight or self._outcomes.pending():
            try:
                conn = self._ensure_connected()
                if unstarted:
                    tokens = [e.job.token for e in unstarted]
                    self.stats.released += queries.release_jobs(conn.cursor(), tokens=tokens)
                    for entry in unstarted:
                        self._inflight.pop(entry.job.lease_token, None)
                    unstarted = []
                self._housekeep()
                self._flush(force=True)
                if not self._inflight or time.monotonic() >= grace_ends:
                    break
                self._wait(
                    min(grace_ends - time.monotonic(), self._housekeeper.seconds_until_due())
                )
            except psycopg.Error as exc:
                if time.monotonic() >= grace_ends:
                    break
                self._on_database_error(exc, deadline=grace_ends)
        self._abandon_running()

    def _abandon_running(self) -> None:
        """After the grace period: hand back each still-running job as a failed attempt, due at
        once. If the database is unreachable, their leases will expire and do the same."""
        for entry in list(self._inflight.values()):
            if entry.task is not None and not entry.started:
                continue  # cancelled before it started; its lease recovers it
            self.abandoned.append(entry.job.id)
            logger.error(
                "Job %s (%s) still running after the %ss grace period; handing it back.",
                entry.job.id,
                entry.job.job_name,
                conf.SHUTDOWN_GRACE,
            )
            if self._conn is None:
                continue  # the database is unreachable; the job's lease will expire instead
            with contextlib.suppress(psycopg.Error):
                error = (
                    f"WorkerShutdown: worker {self.worker_id} stopped before the handler "
                    f"finished (grace period {conf.SHUTDOWN_GRACE}s)."
                )
                self._finish(self._outcomes.write_failure(self._conn, entry.job, error, delay=0))
        self._inflight.clear()

    # -- claim and run -----------------------------------------------------------------------

    def _held_tokens(self) -> list[queries.Token]:
        return [e.job.token for e in self._inflight.values()]

    def _max_jobs_reached(self) -> bool:
        return self.max_jobs is not None and self.stats.claimed >= self.max_jobs

    def _drained(self) -> bool:
        """Burst mode is done: nothing running, nothing known to be claimable right now."""
        if self._inflight or self._maybe_work or self._outcomes.pending():
            return False
        return self._next_due is None or self._next_due > time.monotonic()

    def _active(self) -> int:
        """Jobs running or queued for a handler thread (not those only awaiting their write)."""
        return self._busy

    def _count_busy(self, change: int) -> int:
        with self._busy_lock:
            self._busy += change
            return self._busy

    def _prefetch(self) -> int:
        """How many jobs to claim beyond the free slots: enough for about _PREFETCH_HORIZON
        seconds of work at the recent pace, none until a job has shown how long jobs take."""
        if self._average_run is None or conf.PREFETCH == 0:
            return 0
        per_slot = _PREFETCH_HORIZON / max(self._average_run, 1e-4)
        return min(conf.PREFETCH, int(self.concurrency * per_slot))

    def _fill_slots(self, *, prefetch: bool = True) -> int:
        active = self._active()
        if active >= self.concurrency:
            return 0  # every thread busy: claim again when one frees, in a bigger batch
        free = self.concurrency - active + (self._prefetch() if prefetch else 0)
        if self.max_jobs is not None:
            free = min(free, self.max_jobs - self.stats.claimed)
        if free <= 0 or not self._maybe_work:
            return 0
        assert self._conn is not None
        claim: dict[str, Any] = {
            "worker_id": self.worker_id,
            "limit": free,
            "lease_seconds": conf.LEASE_SECONDS,
            "queues": self.queues,
            "job_names": registry.names(),
        }
        # Finished attempts waiting for their batched write ride along with the claim: one
        # round trip and one commit instead of two.
        successes = self._outcomes.take_successes()
        if not successes:
            jobs = queries.claim_jobs(self._conn.cursor(), **claim)
        else:
            tokens = [job.token for job in successes]
            try:
                done, jobs = queries.complete_and_claim(self._conn.cursor(), tokens=tokens, **claim)
            except psycopg.Error:
                self._outcomes.give_back(successes)
                raise
            completed = set(done)
            for job in successes:
                self._finish(Written(job, "completed" if job.id in completed else "lost"))
        # A full batch means there may be more; a short one means the queue is drained for now.
        self._maybe_work = len(jobs) == free
        if not self._maybe_work:
            self._next_due = self._find_next_due()
        self.stats.claimed += len(jobs)
        for job in jobs:
            self._dispatch(job)
        return len(jobs)

    def _find_next_due(self) -> float | None:
        assert self._conn is not None
        seconds = queries.seconds_until_next_due(
            self._conn.cursor(), queues=self.queues, job_names=registry.names()
        )
        if seconds is None:
            return None
        # Due already, yet the claim skipped it: another transaction holds the row. Look again
        # shortly rather than spinning on it.
        return time.monotonic() + max(seconds, min(_LOCKED_ROW_RECHECK, self.poll_interval))

    def _dispatch(self, job: queries.ClaimedJob) -> None:
        assert self._pool is not None
        entry = _InFlight(job=job, handler=registry.get(job.job_name), started_at=time.monotonic())
        self._inflight[job.lease_token] = entry
        logger.debug("Claimed %s %s (attempt %s)", job.job_name, job.id, job.attempt)
        self._count_busy(+1)
        entry.task = self._pool.submit(functools.partial(self._execute, entry))

    def _execute(self, entry: _InFlight) -> None:
        """Runs in a handler thread. Always reports an outcome, whatever happens."""
        entry.started = True
        started = time.monotonic()
        error: str | None = None
        handed_back: float | None = None
        try:
            thread_connections.before_job()
            if entry.handler is None:
                raise LookupError(f"No handler is registered for job name {entry.job.job_name!r}.")
            report = ProgressReporter(entry.job, self._outcomes.progressed)
            call_handler(entry.handler, entry.job, report)
        except JobHandedBack as back:
            handed_back = back.delay
        except BaseException as exc:
            # SystemExit and KeyboardInterrupt raised by a handler fail that job, not the worker.
            error = describe_error(exc)
        finally:
            took = time.monotonic() - started
            average = self._average_run
            self._average_run = took if average is None else 0.8 * average + 0.2 * took
            entry.done = True
            try:
                thread_connections.after_job()
            except Exception:
                logger.exception("Checking the handler thread's database connections failed")
            first = self._outcomes.finished(entry.job, error, handed_back=handed_back)
            busy = self._count_busy(-1)
            # Wake the loop when it has something to do: a thread is free to fill, a failure to
            # write now, or the first of a batch of outcomes (it starts the batch's clock).
            if first or busy < self.concurrency or error is not None:
                self._wakeup.ring()

    # -- writing outcomes --------------------------------------------------------------------

    def _flush_due(self) -> bool:
        """Write outcomes now, or let more accumulate for one batched statement?"""
        waiting = self._outcomes.waiting()
        if waiting is None:
            return False
        count, oldest = waiting
        return (
            count >= _FLUSH_BATCH
            or time.monotonic() - oldest >= _FLUSH_DELAY
            or self._active() == 0
        )

    def _flush(self, *, force: bool = False) -> None:
        if self._outcomes.pending() and (force or self._flush_due()):
            conn = self._ensure_connected()
            self._outcomes.write(conn, retry_delay=self._retry_delay, on_written=self._finish)

    def _retry_delay(self, job: queries.ClaimedJob) -> float:
        entry = self._inflight.get(job.lease_token)
        base = entry.handler.retry_delay if entry and entry.handler else None
        return backoff_delay(
            job.attempt,
            base=conf.RETRY_DELAY if base is None else base,
            cap=conf.RETRY_DELAY_MAX,
            jitter=conf.RETRY_JITTER,
        )

    def _finish(self, written: Written) -> None:
        job, outcome = written.job, written.outcome
        entry = self._inflight.pop(job.lease_token, None)
        took = time.monotonic() - entry.started_at if entry else 0.0
        counter = outcome.replace(" ", "_")
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if outcome in ("retried", "handed back") and written.delay <= 0:
            self._maybe_work = True
        elif outcome in ("retried", "handed back"):
            due = time.monotonic() + written.delay
            self._next_due = due if self._next_due is None else min(self._next_due, due)
        error = (written.error or "").split("\n", 1)[0]
        if outcome == "completed":
            logger.info("Completed %s %s in %.3fs", job.job_name, job.id, took)
        elif outcome == "retried":
            logger.warning(
                "Attempt %s/%s of %s %s failed (%s); retrying in %.1fs",
                job.attempt, job.max_attempts, job.job_name, job.id, error, written.delay,
            )  # fmt: skip
        elif outcome == "handed back":
            logger.info("%s %s waits; due again in %.1fs", job.job_name, job.id, written.delay)
        elif outcome == "buried":
            logger.error(
                "Job %s %s failed its last attempt (%s/%s) and moved to the dead letters: %s",
                job.job_name, job.id, job.attempt, job.max_attempts, error,
            )  # fmt: skip
        else:
            logger.warning(
                "Outcome of %s %s (attempt %s) dropped: the job was rescued or cancelled meanwhile",
                job.job_name, job.id, job.attempt,
            )  # fmt: skip

    # -- background duties -------------------------------------------------------------------

    def _housekeep(self, *, force: bool = False) -> None:
        conn = self._ensure_connected()
        report = self._housekeeper.run_due(conn, self._held_tokens(), force=force)
        for job_id in report.lost:
            logger.warning("Job %s is no longer ours (rescued or cancelled)", job_id)
        if report.rescued or report.rescued_buried:
            logger.warning(
                "Rescued %s jobs of dead workers (%s of them dead-lettered)",
                report.rescued + report.rescued_buried,
                report.rescued_buried,
            )
            self.stats.rescued += report.rescued + report.rescued_buried
            self._maybe_work = self._maybe_work or report.rescued > 0
        if report.pruned:
            logger.info("Pruned %s finished jobs past the retention window", report.pruned)

    # -- waiting -----------------------------------------------------------------------------

    def _idle_timeout(self) -> float:
        timeout = min(self.poll_interval, self._housekeeper.seconds_until_due())
        if self._next_due is not None:
            timeout = min(timeout, self._next_due - time.monotonic())
        return max(timeout, 0.0)

    def _wait(self, timeout: float) -> None:
        """Sleep until a NOTIFY for our queues, a handler event, a stop request or ``timeout``."""
        conn = self._conn
        listening = self.listen and conn is not None and not conn.closed
        woken = self._wakeup.wait(
            timeout,
            conn=conn if listening else None,
            queues=self.queues,
            due_in=self._work_due_in,
        )
        if woken is Woken.NOTIFIED:
            self._maybe_work = True
        elif woken is Woken.TIMEOUT:
            # Poll: the fallback when NOTIFY is unavailable, or a job we know of became due.
            self._maybe_work = True
            if self._next_due is not None and self._next_due <= time.monotonic():
                self._next_due = None

    def _claimable(self) -> bool:
        """Claiming may find work and is allowed (not stopping, not at --max-jobs)."""
        return self._maybe_work and not self._stopping.is_set() and not self._max_jobs_reached()

    def _work_due_in(self) -> float | None:
        """Seconds until the loop has something to do (0: now): a free thread to fill, or a
        batch of outcomes to write; None if only an event can bring work."""
        if self._claimable() and self._active() < self.concurrency:
            return 0.0
        waiting = self._outcomes.waiting()
        if waiting is None:
            return None
        if self._flush_due():
            return 0.0
        return max(_FLUSH_DELAY - (time.monotonic() - waiting[1]), 0.0)

    def _wake(self) -> None:
        self._wakeup.ring(force=True)
