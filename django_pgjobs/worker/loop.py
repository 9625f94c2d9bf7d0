"""The worker: claim -> run -> complete / retry / bury, plus its background duties.

One loop thread owns the worker's database connection and issues every queue statement; handler
threads only run user code and report back to the :class:`~.completer.Completer`, the one writer
of outcomes. So all SQL lives in :mod:`django_pgjobs.queries`, completions are written in
batches, and a handler can never hold, break or join the connection that holds the leases.

The loop's decisions (whether to claim, how many, how long to sleep) are :mod:`.pacing`'s, the
claims themselves :mod:`.claims`'; its background duties (heartbeat, rescue, prune)
:mod:`.housekeeping`'s; running attempts in handler threads, and their timeouts, :mod:`.slots`';
what follows a written outcome (counts, pacing, the job's line, callbacks) :mod:`.bookkeeping`'s.
Every attempt the worker holds is tracked by its lease token, never by job id alone: the same
job can come back to the same worker as a new attempt while a stale one is still finishing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from django_pgjobs.conf import conf
from django_pgjobs.database import queue_database
from django_pgjobs.schedules.scheduler import Scheduler
from django_pgjobs.worker.after_write import AfterWrite, Measured
from django_pgjobs.worker.bookkeeping import Bookkeeper
from django_pgjobs.worker.claims import Claims
from django_pgjobs.worker.completer import Completer
from django_pgjobs.worker.connection import LoopConnection, pause
from django_pgjobs.worker.housekeeping import Housekeeper
from django_pgjobs.worker.inflight import (
    hand_back_running,
    mark_cancelled,
)
from django_pgjobs.worker.pacing import Pacing
from django_pgjobs.worker.process import SchedulerThread, StopSignals
from django_pgjobs.worker.runners import POOLS, runner_for
from django_pgjobs.worker.slots import Slots
from django_pgjobs.worker.stats import Summary, WorkerStats
from django_pgjobs.worker.wakeup import Wakeup, Woken

logger = logging.getLogger("django_pgjobs.worker")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs jobs from the given queues (all when empty) with ``concurrency`` handler threads.

    ``run()`` loops until stopped (or, with ``burst``, until nothing is due); ``run_once()``
    does one claim-and-run cycle and returns what it did, for tests and embedding. With
    ``scheduler=True`` a thread fires due schedule ticks while ``run()`` runs. With
    ``pool="process"`` each handler thread runs its attempts in a child process of its own,
    killed at a timeout (:mod:`.children`). ``metrics`` (an exporter's) hears of each start,
    outcome and rescue, on the threads of :mod:`.after_write`.
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
        pool: str = "thread",
        metrics: Measured | None = None,
    ) -> None:
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}")
        self.pool = pool
        self.queues = sorted(set(queues or ()))
        self.concurrency = concurrency if concurrency is not None else conf.CONCURRENCY
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.poll_interval = poll_interval if poll_interval is not None else conf.POLL_INTERVAL
        self.worker_id = worker_id or default_worker_id()
        self.max_jobs = max_jobs
        self.alias = queue_database(using)
        self.listen = (not conf.POLL_ONLY) if listen is None else listen
        self.stats = WorkerStats()
        self.scheduler = (
            Scheduler(using=self.alias, poll_interval=self.poll_interval, worker_id=self.worker_id)
            if scheduler
            else None
        )
        # Job ids whose handlers were still running when the shutdown grace period ended.
        self.abandoned: list[uuid.UUID] = []
        # Why the worker stopped by itself (None: it was asked to, or drained in burst mode).
        self.stop_reason: str | None = None

        self._link = LoopConnection(
            alias=self.alias, worker_id=self.worker_id, queues=self.queues, listen=self.listen
        )
        self._after_write = AfterWrite(
            name=f"pgjobs-after-{self.worker_id}", using=self.alias, metrics=metrics
        )
        self._wakeup = Wakeup()
        self._pacing = Pacing(concurrency=self.concurrency, poll_interval=self.poll_interval)
        # The completer hands written outcomes on to the bookkeeper, made below with the slots.
        self._completer = Completer(
            wake=self._wakeup.ring,
            on_written=lambda written: self._books.written(written),
            on_completed=lambda jobs: self._books.completed(jobs),
        )
        self._claims = Claims(
            worker_id=self.worker_id,
            queues=self.queues,
            link=self._link,
            completer=self._completer,
            pacing=self._pacing,
            stats=self.stats,
        )
        self._stopping = threading.Event()
        self._slots = Slots(
            concurrency=self.concurrency,
            name=f"pgjobs-{self.worker_id}",
            completer=self._completer,
            pacing=self._pacing,
            wake=self._wakeup.ring,
            runner=runner_for(
                pool, name=f"pgjobs-{self.worker_id}", progressed=self._completer.progressed
            ),
            stopping=self._stopping,
            on_start=lambda job: self._after_write.started(job, self.worker_id),
            start_lag=self._claims.start_lag,
        )
        self._inflight = self._slots.inflight  # by (job id, lease token)
        self._books = Bookkeeper(
            worker_id=self.worker_id,
            stats=self.stats,
            pacing=self._pacing,
            inflight=self._inflight,
            after_write=self._after_write,
            restricted=lambda: self._claims.restricted,
        )
        self._housekeeper = Housekeeper(
            worker_id=self.worker_id, queues=self.queues, concurrency=self.concurrency
        )
        self._signals = StopSignals(self.request_stop)
        self._closed = False

    def run(self, *, burst: bool = False) -> WorkerStats:
        """Process jobs until stopped; with ``burst``, exit once nothing due is left."""
        self._open()
        if not burst:
            # Started perhaps just after an outage: others may be reconnecting (hold_rescue).
            self._housekeeper.hold_rescue()
        scheduling = None
        summary = Summary(self.worker_id, now=time.monotonic())
        try:
            while not self._stopping.is_set():
                try:
                    self._ensure_connected()  # registers: WorkerIdInUse before anything runs
                    if scheduling is None and self.scheduler is not None:
                        name = f"pgjobs-scheduler-{self.worker_id}"
                        scheduling = SchedulerThread(self.scheduler, name=name)
                        scheduling.start()
                    # Heartbeat first: a write that keeps failing must not starve the leases.
                    self._housekeep()
                    summary.maybe_log(self.stats, now=time.monotonic())
                    self._enforce_timeouts()
                    self._flush()
                    self._link.succeeded()
                    if self._stopping.is_set() or (self._max_jobs_reached() and not self._inflight):
                        break
                    if self._fill_slots():
                        continue
                    if burst and self._drained():
                        break
                    self._wait(
                        self._pacing.idle_timeout(now=time.monotonic(), duties_in=self._duties_in())
                    )
                except psycopg.Error as exc:
                    self._on_database_error(exc)
            if scheduling is not None:
                scheduling.stop()  # first: no schedule tick fires during the shutdown grace
            self._shutdown()
        finally:
            if scheduling is not None:
                scheduling.stop()
            self._close()
        return self.stats

    def run_once(self) -> WorkerStats:
        """One cycle: heartbeat and rescue, claim what is due for free slots, run it to the end,
        write the outcomes. Returns what this cycle did."""
        before = WorkerStats(**vars(self.stats))
        self._open()
        self._ensure_connected()
        self._housekeep(force=True)
        self._pacing.maybe_work = True
        self._fill_slots(prefetch=False)
        self._slots.wait_idle()
        self._flush(force=True)
        self._after_write.wait_idle(conf.SHUTDOWN_GRACE)
        return self.stats - before

    def close(self) -> None:
        """Deregister and release the connection and threads kept between ``run_once`` calls.
        Outcomes ``run_once`` left unwritten (another transaction held their rows) are tried
        once more first: unwritten, their leases run out and the rescue counts the attempts."""
        if self._completer.pending() and self._link.is_open:
            with contextlib.suppress(psycopg.Error):
                self._flush(force=True)
        self._close()
        if not self._closed:
            self._wakeup.close()
            self._closed = True

    def request_stop(self) -> None:
        """Stop claiming and shut down gracefully. Safe from a signal handler or another thread."""
        self._stopping.set()
        self._slots.worker_stopping()  # handlers in child processes read it from shared memory
        self._wakeup.ring(force=True)

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM/SIGINT: graceful stop. A second one: exit at once; leases recover the jobs.

        Returns a function that puts the previous handlers back.
        """
        return self._signals.install()

    def _open(self) -> None:
        self._slots.open()

    def _close(self) -> None:
        self._link.close(
            deregister_instance=(
                self._housekeeper.instance_token if self._housekeeper.registered else None
            )
        )
        self._housekeeper.registered = False
        # Handlers that outlived the grace period were handed back: do not wait for them.
        self._slots.close(wait=not self.abandoned)
        # Receivers get a grace period of their own, and none if handlers were abandoned.
        self._after_write.close(timeout=0 if self.abandoned else conf.SHUTDOWN_GRACE)

    def _ensure_connected(self) -> psycopg.Connection[Any]:
        if not self._link.is_open:
            # Registered before it says it connected: WorkerIdInUse before anything runs.
            self.stats.released += self._link.open(then=self._housekeeper.register_once)
            if self._link.cut_off:
                self._link.cut_off = False
                self._housekeeper.back_from_outage()
            self._housekeeper.heartbeat_soon()  # the leases may be running out
            self._pacing.maybe_work = True
        assert self._link.conn is not None
        return self._link.conn

    def _on_database_error(self, exc: psycopg.Error, *, deadline: float | None = None) -> None:
        """Back off after a failed statement; the unwritten outcomes stay buffered and are
        written after the pause (and the reconnect, if the connection broke)."""
        self.stats.db_errors += 1
        delay = pause(self._link.failed(exc), deadline=deadline)
        if self._stopping.is_set():
            time.sleep(delay)  # shutting down: still pace the retries
        else:
            self._stopping.wait(delay)

    def _shutdown(self) -> None:
        """Give back what never started, let running handlers finish within the grace period,
        hand back whatever is still running after it."""
        if self._signals.received is not None:  # a normal stop (a deploy): INFO, not WARNING
            logger.info(
                "Received %s: finishing running jobs (up to %ss), then exiting. "
                "Send it again to exit at once.",
                signal.Signals(self._signals.received).name,
                conf.SHUTDOWN_GRACE,
            )
        unstarted = self._slots.cancel_unstarted()
        grace_ends = time.monotonic() + conf.SHUTDOWN_GRACE
        while unstarted or self._inflight or self._completer.pending():
            try:
                conn = self._ensure_connected()
                if unstarted:  # kept until given back: a failed release is tried again
                    self.stats.released += self._slots.give_back(conn, unstarted)
                    unstarted = []
                self._housekeep()
                self._enforce_timeouts()
                self._flush(force=True)
                if not self._inflight or time.monotonic() >= grace_ends:
                    break
                self._wait(min(grace_ends - time.monotonic(), self._duties_in()))
            except psycopg.Error as exc:
                if time.monotonic() >= grace_ends:
                    break
                self._on_database_error(exc, deadline=grace_ends)
        self._abandon_running()

    def _abandon_running(self) -> None:
        """After the grace period: hand back each still-running job as a failed attempt, due at
        once. If the database is unreachable, their leases will expire and do the same."""
        self.abandoned += hand_back_running(
            self._inflight.values(), self._completer, self._link.conn, worker_id=self.worker_id
        )
        self._inflight.clear()

    def _max_jobs_reached(self) -> bool:
        return self.max_jobs is not None and self.stats.claimed >= self.max_jobs

    def _drained(self) -> bool:
        """Burst mode is done: nothing running, nothing known to be claimable right now."""
        if self._inflight or self._completer.pending():
            return False
        return self._pacing.drained(now=time.monotonic())

    def _claim_limit(self, *, prefetch: bool = True) -> int:
        return self._pacing.claim_size(
            busy=self._slots.busy,
            prefetch_limit=conf.PREFETCH if prefetch else 0,
            left=None if self.max_jobs is None else self.max_jobs - self.stats.claimed,
            restricted=self._claims.restricted,
        )

    def _fill_slots(self, *, prefetch: bool = True) -> int:
        limit = self._claim_limit(prefetch=prefetch)
        if limit <= 0:
            return 0
        start_now = min(limit, max(self.concurrency - self._slots.busy, 0))
        conn = self._ensure_connected()
        # The jobs go to threads while the completions sent behind the claim are written, and
        # with jobs claimed ahead the next claim may go behind them (Claims.take).
        more = self._claim_behind if start_now < limit else None
        jobs = self._claims.take(
            conn, limit=limit, start_now=start_now, then=self._slots.dispatch, more=more
        )
        self._claims.look_ahead(conn)
        return len(jobs)

    def _claim_behind(self, taken: int) -> int:
        """How many jobs the claim behind a full one of ``taken`` may take (Pacing.behind); none
        once the worker stops, a duty is due, or may_claim_behind() says the outcomes wait."""
        stop = self._stopping.is_set() or self._duties_in() <= 0
        if stop or not self._completer.may_claim_behind():
            return 0
        left = None if self.max_jobs is None else self.max_jobs - self.stats.claimed
        busy, limit = self._slots.busy, conf.PREFETCH
        return self._pacing.behind(taken=taken, busy=busy, prefetch_limit=limit, left=left)

    def _flush(self, *, force: bool = False) -> None:
        if not self._completer.pending():
            return
        if not force and self._completer.rides_on_claims() and self._claim_limit() > 0:
            return  # this turn claims: they go right behind its claim (worker.behind)
        due = self._completer.due_in(busy=self._slots.busy, now=time.monotonic())
        if force or due == 0:
            self._completer.write(self._ensure_connected())

    def _enforce_timeouts(self) -> None:
        """Fail the attempts past their timeout (:mod:`.slots`). A worker left with as many
        abandoned threads as its concurrency stops: only a new process gets rid of them."""
        self._slots.enforce_timeouts()
        abandoned = self._slots.abandoned_threads
        if abandoned >= self.concurrency and not self._stopping.is_set():
            s = "" if abandoned == 1 else "s"
            self.stop_reason = (
                f"{abandoned} handler thread{s} abandoned after a timeout {'are' if s else 'is'} "
                "still running (as many as its concurrency): stopping so a new process takes over"
            )
            logger.error("Worker %s: %s", self.worker_id, self.stop_reason)
            self.request_stop()

    @property
    def busy_slots(self) -> int:
        """Handler threads running or about to run an attempt (the exporter's gauge)."""
        return self._slots.busy

    @property
    def abandoned_threads(self) -> int:
        """Handler threads abandoned after a timeout that have not returned yet."""
        return self._slots.abandoned_threads

    def _duties_in(self) -> float:
        """Seconds until the next background duty: a heartbeat, a prune, a timeout check."""
        check = self._slots.seconds_until_check()
        duties = self._housekeeper.seconds_until_due(renew_by=self._slots.renew_by())
        return duties if check is None else min(duties, check)

    def _housekeep(self, *, force: bool = False) -> None:
        report = self._slots.housekeep(self._housekeeper, self._ensure_connected(), force=force)
        self._books.housekept(report)
        # A claim whose jobs never reached a thread (LoopConnection.claim_token): after the
        # heartbeat, which a give-back that keeps failing must not hold up.
        given_back = self._link.give_back_lost()
        self.stats.released += given_back
        self._pacing.maybe_work = self._pacing.maybe_work or given_back > 0

    def _wait(self, timeout: float) -> None:
        """Sleep until a NOTIFY for our queues, a handler event, a stop request or ``timeout``."""
        woken = self._wakeup.wait(
            timeout, conn=self._link.listener(), queues=self.queues, due_in=self._work_due_in
        )
        # A cancel's NOTIFY names the attempt: its handler can tell now, not at a heartbeat.
        mark_cancelled(self._inflight, self._wakeup.take_cancelled(), self._link.conn)
        if woken is Woken.NOTIFIED:
            self._pacing.notified()
        elif woken is Woken.TIMEOUT:
            self._pacing.polled(now=time.monotonic())

    def _work_due_in(self) -> float | None:
        """Seconds until the loop has something to do (0: now): a free thread to fill, or a
        batch of outcomes to write; None if only an event can bring work."""
        claimable = (
            self._pacing.maybe_work and not self._stopping.is_set() and not self._max_jobs_reached()
        )
        if claimable and self._slots.busy < self._pacing.refill_at:
            return 0.0
        return self._completer.due_in(busy=self._slots.busy, now=time.monotonic())
