"""What runs once an attempt's outcome is committed, and the signals of a worker's attempts:
the callback a handler asked for (``AttemptNotes.on_written``: the Django Tasks backend sends
``task_finished`` from one), :mod:`django_pgjobs.signals` (:mod:`.job_signals`), and the
worker's metrics (:class:`Measured`) when it has an exporter.

The completer writes outcomes on the loop thread; these run user code (signal receivers) that
may be slow or may raise, so they run in a thread of their own, one at a time in the order
things happened (a ``job_started`` before its job's outcome), never on the loop nor on a
handler's thread. The thread keeps its own database connections, closed as it exits, as
handler threads do. Nothing is queued when nothing would run: no callback, no receiver.

Metrics are cheaper still: the loop and handler threads only note each event (an append), and
one task on this thread applies everything noted since the last (:meth:`Measured.drain`). That
task is never dropped for a backlog of slow receivers; a scrape drains what is noted too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Protocol

from django.db import connections

from django_pgjobs import queries, signals
from django_pgjobs.jobs.context import AttemptNotes
from django_pgjobs.jobs.error_text import log_exception
from django_pgjobs.observability.display import counted
from django_pgjobs.worker import handler_connections, job_signals
from django_pgjobs.worker.housekeeping import HousekeepingReport
from django_pgjobs.worker.outcomes import Outcome, Written
from django_pgjobs.worker.pool import HandlerPool

logger = logging.getLogger("django_pgjobs.worker")

# What the callbacks hear about: an outcome the attempt's handler can act on. A LOST one was
# dropped by fencing (the job moved on without it); HANDED_BACK and SNOOZED ones are not
# outcomes: the job runs again as if this attempt had not started.
_REPORTED = (Outcome.COMPLETED, Outcome.RETRIED, Outcome.BURIED, Outcome.CANCELLED)

# Callbacks and signals waiting at most: each holds its attempt's result and exception (with
# its traceback's frames), and receivers slower than the jobs must not grow the worker without
# end. Past it, new ones are dropped (their outcomes are committed all the same) and a warning
# says so.
MAX_WAITING = 1000


class Measured(Protocol):
    """What a worker's metrics hear (:class:`django_pgjobs.metrics.worker.WorkerMetrics`). Each
    of the first three only notes its event, on the caller's thread, and says whether a
    :meth:`drain` must be run for it (none is pending yet); :meth:`drain` applies them."""

    def started(self, job: queries.ClaimedJob) -> bool: ...

    def written(self, written: Written, took: float) -> bool: ...

    def rescued(self, *, retried: int, buried: int, unstarted: int) -> bool: ...

    def drain(self) -> None: ...


class AfterWrite:
    def __init__(self, *, name: str, using: str, metrics: Measured | None = None) -> None:
        self._name = name
        self._using = using  # the worker's database alias
        self._metrics = metrics
        self._pool: HandlerPool | None = None
        self._dropping = False  # warned that callbacks are being dropped

    def started(self, job: queries.ClaimedJob, worker_id: str) -> None:
        """A handler begins (called on its thread): ``job_started``, if anyone listens. A
        metrics object that raises still lets the signal go (its caller logs the error)."""
        try:
            if self._metrics is not None and self._metrics.started(job):
                self._submit(self._metrics.drain, always=True)
        finally:
            if signals.listened(signals.job_started):
                self._submit(functools.partial(job_signals.send_started, job, worker_id))

    def written(
        self, notes: AttemptNotes | None, written: Written, took: float, worker_id: str
    ) -> None:
        """The attempt's ``on_written`` for this outcome, if it has one, and the outcome's
        signals, if anyone listens; ``took``: seconds its handler ran."""
        if self._metrics is not None and self._metrics.written(written, took):
            self._submit(self._metrics.drain, always=True)
        callback = notes is not None and notes.on_written is not None
        if not (callback and written.outcome in _REPORTED) and not job_signals.wanted(written):
            return
        self._submit(functools.partial(after_written, notes, written, took, worker_id, self._using))

    def hears_completions(self) -> bool:
        """Whether anything but an attempt's own callback hears of a completion: the metrics,
        or a receiver of ``job_succeeded``. Asked once for a batch of completions."""
        return self._metrics is not None or job_signals.wanted_for(Outcome.COMPLETED)

    def rescued(self, report: HousekeepingReport) -> None:
        """What this worker's rescue sweep took back from silent workers: for the metrics, and
        the signals of the jobs it moved to the dead letters, if anyone listens."""
        if not report.rescued_total:
            return
        if self._metrics is not None and self._metrics.rescued(
            retried=report.rescued, buried=report.rescued_buried, unstarted=report.rescued_unstarted
        ):
            self._submit(self._metrics.drain, always=True)
        if report.rescued_dead and job_signals.rescue_wanted():
            self._submit(functools.partial(_send_rescued, report.rescued_dead, self._using))

    def _submit(self, call: Callable[[], None], *, always: bool = False) -> None:
        """Queue ``call`` for the thread; past MAX_WAITING it is dropped unless ``always`` (a
        metrics drain: one at a time, and what it applies is bounded where it is noted)."""
        if self._pool is None:
            self._pool = HandlerPool(1, name=self._name, on_thread_exit=connections.close_all)
        call = functools.partial(_with_connection_care, call)
        if always:
            self._pool.submit(call)
            return
        if self._pool.unfinished >= MAX_WAITING:
            if not self._dropping:
                logger.warning(
                    "%s callbacks after written outcomes (signal receivers, task_finished) are "
                    "waiting: dropping new ones until they catch up. A receiver is too slow.",
                    MAX_WAITING,
                )
            self._dropping = True
            return
        self._dropping = False
        self._pool.submit(call)

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True if self._pool is None else self._pool.wait_idle(timeout)

    def close(self, *, timeout: float) -> None:
        """Let the callbacks already queued run for ``timeout`` seconds at most (0: none), then
        stop the thread; what is left is dropped, and a warning says so."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        left = pool.unfinished
        if left and not pool.shutdown(wait=timeout > 0, timeout=timeout):
            logger.warning(
                "Stopped without waiting longer for %s after written outcomes "
                "(task_finished receivers): their outcomes are committed, their signals not "
                "all sent.",
                counted(pool.unfinished or left, "callback"),
            )
        elif not left:
            pool.shutdown(wait=False)


def after_written(
    notes: AttemptNotes | None, written: Written, took: float, worker_id: str | None, using: str
) -> None:
    """Everything that follows a committed outcome, here and now: the handler's callback, then
    the signals (what the thread runs; ``testing.drain()`` calls it in the test's thread)."""
    call_after_write(notes, written.outcome)
    try:
        job_signals.send_written(written, took, worker_id, using)
    except Exception:
        log_exception(logger, "Sending the signals of a %s outcome failed", written.outcome.value)


def _send_rescued(dead: tuple[queries.DeadLettered, ...], using: str) -> None:
    try:
        job_signals.send_rescued(dead, using)
    except Exception:
        log_exception(logger, "Sending the signals of a rescue's dead letters failed")


def call_after_write(notes: AttemptNotes | None, outcome: Outcome) -> None:
    """Run the attempt's ``on_written`` for this outcome here and now (what the thread runs;
    ``testing.drain()`` calls it in the test's own thread). Never raises."""
    if notes is None or notes.on_written is None or outcome not in _REPORTED:
        return
    try:
        notes.on_written(outcome.value)
    except Exception:
        log_exception(logger, "A callback after a written outcome (%s) raised", outcome.value)


def _with_connection_care(call: Callable[[], None]) -> None:
    """Run ``call`` as a handler's attempt runs: this thread's Django connections get the same
    care between calls (one the server closed is replaced, one left in a transaction by a
    receiver is closed, CONN_MAX_AGE holds), or a connection lost once, or a receiver's open
    transaction, would last as long as the worker."""
    handler_connections.before_job()
    try:
        call()
    finally:
        handler_connections.after_job()
