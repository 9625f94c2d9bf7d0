"""The worker's handler slots: each claimed attempt handed to a pool thread, its outcome reported
back to the completer, its timeout enforced, and the count of busy slots the loop claims by.

An attempt is reported once, by whichever comes first under the slots' lock: its handler
returning (``settling``) or its timeout (``timed_out``). A timed-out attempt is failed with
``JobTimeout`` through the completer like any failure (retried or dead-lettered, fenced by its
lease token); its slot is free at once. How its handler is stopped depends on where it runs:

- in a thread (the default), it cannot be: the thread is abandoned to finish on its own, a new
  thread takes its place (so the worker keeps its concurrency), and whatever the handler does
  later is discarded (the lease token would fence it out anyway);
- in a child process (``--pool process``: :mod:`.children`), the slot's thread kills the child
  at the deadline and reports the timeout itself.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from django.db import connections

from django_pgjobs import queries
from django_pgjobs.conf import conf
from django_pgjobs.jobs.error_text import log_exception
from django_pgjobs.jobs.registry import JobHandler, registry
from django_pgjobs.jobs.timeouts import (
    TIMEOUT_EXCEPTION,
    AttemptTimeout,
    attempt_timeout,
    timeout_error,
)
from django_pgjobs.observability.display import counted
from django_pgjobs.worker import ahead
from django_pgjobs.worker.attempt import AttemptResult
from django_pgjobs.worker.completer import Completer
from django_pgjobs.worker.deadlines import Deadlines
from django_pgjobs.worker.housekeeping import Housekeeper, HousekeepingReport
from django_pgjobs.worker.inflight import InFlight, log_timed_out
from django_pgjobs.worker.outcomes import job_fields, jobs_logger
from django_pgjobs.worker.pacing import Pacing
from django_pgjobs.worker.pool import HandlerPool
from django_pgjobs.worker.runners import Runner
from django_pgjobs.worker.start_lag import StartLag, log_begun_too_late

logger = logging.getLogger("django_pgjobs.worker")


# A kind of job in a claim: its handler (None: none registered) and its attempts' timeout.
_Kind = tuple[JobHandler | None, AttemptTimeout | None]


class Slots:
    """``runner`` runs the attempts (see :class:`~.runners.Runner`)."""

    def __init__(
        self,
        *,
        concurrency: int,
        name: str,
        completer: Completer,
        pacing: Pacing,
        wake: Callable[[], None],
        runner: Runner,
        stopping: threading.Event,
        on_start: Callable[[queries.ClaimedJob], None] | None = None,
        start_lag: StartLag | None = None,
    ) -> None:
        self.concurrency = concurrency
        # Every attempt held, by (job id, lease token), until its outcome is written.
        self.inflight: dict[queries.Token, InFlight] = {}
        # Attempts handed to the pool whose slot is not free yet.
        self.busy = 0
        self._name = name
        self._completer = completer
        self._pacing = pacing
        self._wake = wake
        self._runner = runner
        self._stopping = stopping  # set when the worker is asked to stop (handlers may ask)
        self._on_start = on_start  # called on the handler's thread as it begins
        self._start_lag = start_lag  # told how late each rate-limited handler began
        self._lock = threading.Lock()
        self._pool: HandlerPool | None = None
        self._closed_pool: HandlerPool | None = None  # the last one, with its abandoned threads
        self._deadlines = Deadlines()
        self._renew_by: float | None = None  # see renew_by()

    def open(self) -> None:
        if self._pool is None:
            self._pool = HandlerPool(
                self.concurrency,
                name=self._name,
                on_thread_exit=self._thread_exit,
            )
            self._runner.open(self.concurrency)

    def dispatch(
        self,
        jobs: Sequence[queries.ClaimedJob],
        *,
        sent_at: float | None = None,
        taken: Callable[[], object] | None = None,
    ) -> None:
        """Hand the claimed jobs to the pool, in order. ``sent_at``: when the claim was sent
        (monotonic; default now), from which their leases count: the short one of a job
        claimed ahead for all of them, until the heartbeat renews (see :mod:`.ahead`).
        ``taken`` is called once the jobs are this worker's, just before they go to the pool:
        an error before that leaves none of them held here (Claims.take gives them back)."""
        assert self._pool is not None
        setting, now = conf.TIMEOUT, time.monotonic()  # once per claim, not per job
        since, short = now if sent_at is None else sent_at, ahead.ahead_lease()
        if jobs:
            # Every job of the claim holds the short lease until a heartbeat says otherwise.
            due = since + short / 2
            self._renew_by = due if self._renew_by is None else min(self._renew_by, due)
        entries: list[InFlight] = []
        debug = jobs_logger.isEnabledFor(logging.DEBUG)
        # A claim's jobs are mostly of a few kinds: each kind's handler and timeout are looked
        # up once (per job, they were a tenth of the loop thread's time per job).
        kinds: dict[tuple[str, float | None, float | None], _Kind] = {}
        try:
            for job in jobs:
                if debug:
                    jobs_logger.debug(
                        "Claimed %s %s (attempt %s)", job.job_name, job.id, job.attempt,
                        extra=job_fields(job),
                    )  # fmt: skip
                kind = (job.job_name, job.timeout, job.queue_timeout)
                found = kinds.get(kind)
                if found is None:
                    handler = registry.get(job.job_name)
                    timeout = attempt_timeout(job, handler, setting=setting)
                    found = kinds[kind] = (handler, timeout)
                handler, timeout = found
                entry = InFlight.of(job, handler, stopping=self._stopping, timeout=timeout)
                entry.started_at = since  # claimed then: the give-back counts from the claim
                ahead.granted(entry, since=since, seconds=short)
                self.inflight[job.token] = entry
                entries.append(entry)
                if not self._runner.kills_on_timeout:  # else nothing here looks: enforce_timeouts
                    self._deadlines.dispatched(entry, now=now)
        except BaseException:
            for entry in entries:  # none of them reaches a thread
                self.inflight.pop(entry.job.token, None)
            raise
        if taken is not None:
            taken()
        # Busy before any can finish (a handler's report counts its slot free), and one lock
        # for the claim's tasks: per job, both were a tenth of the loop thread's time.
        self._count_busy(+len(entries))
        tasks = self._pool.submit_many(
            [
                (functools.partial(self._execute, e), functools.partial(self._execute_failed, e))
                for e in entries
            ]
        )
        for entry, task in zip(entries, tasks, strict=True):
            entry.task = task

    def worker_stopping(self) -> None:
        """The worker's ``stopping`` event is set: handlers the runner runs elsewhere learn it
        now (:meth:`~.runners.Runner.worker_stopping`)."""
        self._runner.worker_stopping()

    def cancel_unstarted(
        self, which: Callable[[InFlight], bool] = lambda _: True
    ) -> list[InFlight]:
        """Take back the attempts ``which`` picks (all: a shutdown) whose handler has not
        started, and those refused at their start: their slots are free; they stay held until
        the caller gives them back."""
        pool = self._pool
        with self._lock:  # a refusal sets ``refused`` and frees its slot under the lock
            unstarted = [
                e
                for e in self.inflight.values()
                if not e.started
                and which(e)
                and (e.refused or (pool and e.task and pool.cancel(e.task)))
            ]
            self.busy -= sum(1 for e in unstarted if not e.refused)
        return unstarted

    def housekeep(
        self, housekeeper: Housekeeper, conn: psycopg.Connection[Any], *, force: bool = False
    ) -> HousekeepingReport:
        """The housekeeper's duties with what the slots hold: when a heartbeat is due, first
        give back the jobs claimed ahead that waited too long, then renew the rest."""
        renew_by = self.renew_by()
        given_back = 0
        # Every turn of a busy loop asks; only a due heartbeat reads every attempt held.
        heartbeat = force or housekeeper.heartbeat_due(renew_by=renew_by)
        held: list[queries.Token] = []
        started: list[tuple[queries.Token, float]] = []
        if heartbeat:
            given_back = self.give_back_waiting(conn)
            started = self.started(time.monotonic())
            held = self.held_tokens()
        report = housekeeper.run_due(conn, held, started=started, heartbeat=heartbeat)
        report.given_back = given_back
        self.renewed(report, held=held, started=started)
        return report

    def renew_by(self) -> float | None:
        """When the held leases need renewing (see :func:`.ahead.renew_by`), as of the last
        heartbeat and the claims since: attempts that ended since may make it early, never
        late (an early heartbeat computes it afresh)."""
        return self._renew_by

    def give_back_waiting(self, conn: psycopg.Connection[Any]) -> int:
        """Give back the jobs claimed ahead that no thread has taken for half their short lease,
        or that a thread refused to start (see :mod:`.ahead`): another worker may start them
        now. Returns how many went back."""
        now = time.monotonic()
        waiting = self.cancel_unstarted(lambda e: e.refused or ahead.waited_too_long(e, now=now))
        if not waiting:
            return 0
        released = self.give_back(conn, waiting)
        logger.debug("Gave back %s not started", counted(released, "job"))
        return released

    def give_back(self, conn: psycopg.Connection[Any], unstarted: Sequence[InFlight]) -> int:
        """Forget ``unstarted`` (taken back by :meth:`cancel_unstarted`) and give their jobs
        back to the queue, attempts undone and starts out of a rate limit's ledger. Forgotten
        first: if the release fails, their leases run out and the rescue gives them back,
        attempt not counted (or the caller tries again). Returns how many went back."""
        for entry in unstarted:
            self.inflight.pop(entry.job.token, None)
        tokens = [e.job.token for e in unstarted]
        starts = [e.job.counted_at for e in unstarted]
        return queries.release_jobs(conn.cursor(), tokens=tokens, counted=starts)

    def renewed(
        self,
        report: HousekeepingReport,
        *,
        held: Sequence[queries.Token],
        started: Sequence[tuple[queries.Token, float]],
    ) -> None:
        """After housekeeping: if its heartbeat ran, the ``held`` attempts it did not find lost
        have leases counted from when it was sent, whole for those ``started``."""
        if report.renewed_at is None:
            return
        lost, began = set(report.lost), {token for token, _ in started}
        whole, short = conf.LEASE_SECONDS, ahead.ahead_lease()
        for token in held:
            entry = self.inflight.get(token)
            if entry is not None and token not in lost:
                seconds = whole if token in began else short
                ahead.granted(entry, since=report.renewed_at, seconds=seconds)
        # The lost are marked after this (Worker._housekeep): left out here already.
        renewing = (e for e in self.inflight.values() if e.job.token not in lost)
        self._renew_by = ahead.renew_by(renewing)

    def wait_idle(self) -> None:
        """Until every handler has returned or timed out (``run_once``)."""
        assert self._pool is not None
        while not self._pool.wait_idle(self.seconds_until_check()):
            self.enforce_timeouts()  # a hung handler must not hang run_once() for ever

    def close(self, *, wait: bool) -> None:
        """Cancel what has not started and stop the threads; ``wait`` for running handlers.
        Threads abandoned after a timeout are never waited for."""
        if self._pool is None:
            return
        for entry in self.inflight.values():
            if entry.task is not None:
                self._pool.cancel(entry.task)
        if not wait:
            self._runner.close()  # children running handed-back attempts are killed
        self._pool.shutdown(wait=wait)
        self._runner.close()  # and what no thread took (a child started ahead of its slot)
        self._closed_pool, self._pool = self._pool, None

    @property
    def abandoned_threads(self) -> int:
        """Handler threads abandoned after a timeout that have not returned yet."""
        pools = (self._pool, self._closed_pool)
        return sum(pool.abandoned_threads for pool in pools if pool is not None)

    def held_tokens(self) -> list[queries.Token]:
        """The attempts whose leases the heartbeat renews: never one that timed out."""
        return [e.job.token for e in self.inflight.values() if not e.timed_out]

    def started(self, now: float) -> list[tuple[queries.Token, float]]:
        """Renewed attempts whose handler has begun, with how many seconds ago."""
        held = self.inflight.values()
        return [(e.job.token, now - e.began) for e in held if e.started and not e.timed_out]

    def seconds_until_check(self) -> float | None:
        """Seconds until an attempt may time out (0: now); None if none can."""
        return self._deadlines.seconds_until_check(now=time.monotonic())

    def enforce_timeouts(self) -> None:
        """Fail each attempt past its timeout and free its slot (see :mod:`.deadlines`)."""
        if self._runner.kills_on_timeout:
            return  # each slot's thread kills what runs its handler at the deadline
        for entry in self._deadlines.expired(self.inflight.values(), now=time.monotonic()):
            with self._lock:
                if entry.settling:
                    continue  # it returned just now: its own outcome stands
                entry.timed_out = True
                self.busy -= 1
            assert self._pool is not None
            assert entry.task is not None
            assert entry.timeout is not None
            self._pool.abandon(entry.task)
            entry.attempt.no_longer_ours(timed_out=True)  # is_cancelled() says so to its handler
            error = timeout_error(entry.timeout, hard=False)
            took = entry.took = time.monotonic() - entry.began
            result = AttemptResult(took=took, error=error, exception=TIMEOUT_EXCEPTION)
            self._completer.finished(entry.job, result)
            log_timed_out(entry, abandoned=self._pool.abandoned_threads)

    def _thread_exit(self) -> None:
        # Handler threads keep their connections between jobs; each closes its own (Django
        # connections are per thread) as it exits.
        try:
            self._runner.thread_exit()
        finally:
            connections.close_all()

    def _count_busy(self, change: int) -> int:
        with self._lock:
            self.busy += change
            return self.busy

    def _execute(self, entry: InFlight) -> None:
        """Runs in a handler thread. Always reports an outcome, whatever happens: if anything
        here raises, the pool calls :meth:`_execute_failed` in the same thread."""
        now = time.monotonic()
        if ahead.too_late_to_start(entry, now=now):
            # Claimed ahead, and half its short lease is gone before a thread was free (the
            # loop is late renewing it): the rescue could give it to another worker before its
            # start is recorded. Not run: the loop gives it back, its attempt not counted.
            ahead.log_too_late(entry.job)
            with self._lock:
                entry.refused = True
                self.busy -= 1
            self._wake()
            return
        entry.began = now
        if entry.timeout is not None:
            entry.deadline = entry.began + entry.timeout.seconds
        entry.started = True  # last: the loop reads ``deadline`` once it sees this
        result = self._runner(entry, self._began)
        if result.too_late is not None:
            # Not begun: too late for its rate limit (start_lag.begins_too_late). Its lag is
            # measured all the same, so that the next claims' margin covers it; the completer
            # gives the job back.
            if self._start_lag is not None:
                self._start_lag.began(entry.job, began=result.too_late)
            log_begun_too_late(entry.job, at=result.too_late)
        self._report(entry, result)

    def _began(self, entry: InFlight, at: float) -> None:
        """``entry``'s handler begins, at ``at`` (monotonic): in this thread, or in its child."""
        if self._start_lag is not None and entry.job.stamp_after is not None:
            self._start_lag.began(entry.job, began=at)
        if self._on_start is not None:
            try:
                self._on_start(entry.job)
            except Exception:
                # Our own hook (metrics, job_started's queueing): its failure is not the job's.
                log_exception(
                    logger, "Noting the start of %s %s failed", entry.job.job_name, entry.job.id
                )

    def _execute_failed(self, entry: InFlight, exc: BaseException) -> None:
        """The runner catches whatever a handler raises; this is a failure of our own. Still
        report an outcome, or the job would stay ours, its lease renewed, for ever."""
        if not entry.reported:
            error = "WorkerError: the attempt could not be run."
            self._report(entry, AttemptResult(took=0.0, error=error))

    def _report(self, entry: InFlight, result: AttemptResult) -> None:
        with self._lock:
            entry.settling = not entry.timed_out
        if not entry.settling:
            # Its failure is written and its slot given to another thread. The lease token
            # would fence this outcome out anyway; it is not even offered.
            logger.warning(
                "The abandoned handler of %s %s returned after %.1fs; its outcome is discarded",
                entry.job.job_name, entry.job.id, result.took,
            )  # fmt: skip
            return
        entry.notes, entry.took = result.notes, result.took
        first = self._completer.finished(entry.job, result)
        entry.reported = True
        busy = self._count_busy(-1)
        if entry.started and result.too_late is None:  # one that never ran sets no pace
            self._pacing.record_run(result.took)
        # Wake the loop when it has something to do: a claim to make (a thread free, or the
        # jobs claimed ahead running low), a failure to write now, or the first of a batch of
        # outcomes (it starts the batch's clock).
        if first or busy < self._pacing.refill_at or result.error is not None:
            self._wake()
