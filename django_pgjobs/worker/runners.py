"""Where the slots' attempts run (:class:`Runner`): in the slot's own thread (:class:`InThread`,
the default ``--pool thread``), or in a child process (:mod:`.children`, ``--pool process``)."""

from __future__ import annotations

import functools
from typing import Protocol

from django_pgjobs.jobs.context import ProgressSink
from django_pgjobs.worker.attempt import AttemptResult, run_attempt
from django_pgjobs.worker.children import ChildRunner, EntryBegan
from django_pgjobs.worker.inflight import InFlight
from django_pgjobs.worker.start_lag import checked_begin

# Where handlers run: a thread of the worker, or a child process per thread (a hard timeout).
POOLS = ("thread", "process")


class Runner(Protocol):
    """Runs attempts for the slots' threads: in the thread itself, or in a child process."""

    # It enforces timeouts itself, by killing what runs the handler: the slots must not
    # abandon the thread.
    kills_on_timeout: bool

    def __call__(self, entry: InFlight, began: EntryBegan) -> AttemptResult:
        """Run one attempt in the calling slot thread and say how it went; never raises.
        ``began`` is called as the handler begins, with the attempt and the time.monotonic()
        it began at."""

    def worker_stopping(self) -> None:
        """The worker was asked to stop: tell handlers that read ``stopping`` elsewhere than in
        the worker's event. Called from a signal handler too: takes no lock."""

    def open(self, slots: int) -> None:
        """The slots open: get ready to run ``slots`` attempts at once."""

    def thread_exit(self) -> None:
        """A slot thread is ending: release what it kept."""

    def close(self) -> None:
        """The worker is closing: stop whatever still runs, at once."""


class InThread:
    """Runs each attempt in the slot's own thread (the default ``--pool thread``)."""

    kills_on_timeout = False

    def __init__(self, progressed: ProgressSink) -> None:
        self._progressed = progressed

    def __call__(self, entry: InFlight, began: EntryBegan) -> AttemptResult:
        job = entry.job
        if job.begin_by is None:  # no rate limit: nothing to check (most jobs: no hook)
            began(entry, entry.began)
            return run_attempt(entry.handler, job, self._progressed, entry.attempt)
        begin = checked_begin(job, functools.partial(began, entry))
        return run_attempt(entry.handler, job, self._progressed, entry.attempt, begin)

    def worker_stopping(self) -> None:
        pass  # a handler thread reads the worker's own event

    def open(self, slots: int) -> None:
        pass

    def thread_exit(self) -> None:
        pass

    def close(self) -> None:
        pass


def runner_for(pool: str, *, name: str, progressed: ProgressSink) -> Runner:
    """The runner of ``pool`` (one of :data:`POOLS`); ``progressed`` hears the handlers'
    progress reports (Completer.progressed)."""
    if pool == "process":
        return ChildRunner(name=name, progressed=progressed)
    return InThread(progressed)
