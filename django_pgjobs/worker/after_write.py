"""Callbacks a handler asked for once its attempt's outcome is committed (``AttemptNotes.
on_written``: the Django Tasks backend sends ``task_finished`` from one).

The completer writes outcomes on the loop thread; the callbacks run user code (signal
receivers) that may be slow or may raise, so they run in a thread of their own, one at a time
in the order the outcomes were written, never on the loop. The thread keeps its own database
connections, closed as it exits, as handler threads do.
"""

from __future__ import annotations

import functools
import logging

from django.db import connections

from django_pgjobs.jobs.context import AttemptNotes
from django_pgjobs.jobs.error_text import log_exception
from django_pgjobs.worker.completer import Outcome
from django_pgjobs.worker.pool import HandlerPool

logger = logging.getLogger("django_pgjobs.worker")

# What the callbacks hear about: an outcome the attempt's handler can act on. A LOST one was
# dropped by fencing (the job moved on without it); a HANDED_BACK one is not an outcome.
_REPORTED = (Outcome.COMPLETED, Outcome.RETRIED, Outcome.BURIED)


class AfterWrite:
    def __init__(self, *, name: str) -> None:
        self._name = name
        self._pool: HandlerPool | None = None

    def written(self, notes: AttemptNotes | None, outcome: Outcome) -> None:
        """Run the attempt's ``on_written`` for this outcome, if it has one, in the thread."""
        if notes is None or notes.on_written is None or outcome not in _REPORTED:
            return
        if self._pool is None:
            self._pool = HandlerPool(1, name=self._name, on_thread_exit=connections.close_all)
        self._pool.submit(functools.partial(call_after_write, notes, outcome))

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True if self._pool is None else self._pool.wait_idle(timeout)

    def close(self, *, wait: bool) -> None:
        """Stop the thread after the callbacks already queued (``wait``: for them to end)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait)
            self._pool = None


def call_after_write(notes: AttemptNotes | None, outcome: Outcome) -> None:
    """Run the attempt's ``on_written`` for this outcome here and now (what the thread runs;
    ``testing.drain()`` calls it in the test's own thread). Never raises."""
    if notes is None or notes.on_written is None or outcome not in _REPORTED:
        return
    try:
        notes.on_written(outcome.value)
    except Exception:
        log_exception(logger, "A callback after a written outcome (%s) raised", outcome.value)
