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
from django_pgjobs.worker.outcomes import Outcome
from django_pgjobs.worker.pool import HandlerPool

logger = logging.getLogger("django_pgjobs.worker")

# What the callbacks hear about: an outcome the attempt's handler can act on. A LOST one was
# dropped by fencing (the job moved on without it); HANDED_BACK and SNOOZED ones are not
# outcomes: the job runs again as if this attempt had not started.
_REPORTED = (Outcome.COMPLETED, Outcome.RETRIED, Outcome.BURIED, Outcome.CANCELLED)

# Callbacks waiting at most: each holds its attempt's result and exception (with its
# traceback's frames), and receivers slower than the jobs must not grow the worker without end.
# Past it, new ones are dropped (their outcomes are committed all the same) and a warning says so.
MAX_WAITING = 1000


class AfterWrite:
    def __init__(self, *, name: str) -> None:
        self._name = name
        self._pool: HandlerPool | None = None
        self._dropping = False  # warned that callbacks are being dropped

    def written(self, notes: AttemptNotes | None, outcome: Outcome) -> None:
        """Run the attempt's ``on_written`` for this outcome, if it has one, in the thread."""
        if notes is None or notes.on_written is None or outcome not in _REPORTED:
            return
        if self._pool is None:
            self._pool = HandlerPool(1, name=self._name, on_thread_exit=connections.close_all)
        if self._pool.unfinished >= MAX_WAITING:
            if not self._dropping:
                logger.warning(
                    "%s callbacks after written outcomes (task_finished receivers) are waiting: "
                    "dropping new ones until they catch up. A receiver is too slow.",
                    MAX_WAITING,
                )
            self._dropping = True
            return
        self._dropping = False
        self._pool.submit(functools.partial(call_after_write, notes, outcome))

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
                "Stopped without waiting longer for %s callbacks after written outcomes "
                "(task_finished receivers): their outcomes are committed, their signals not "
                "all sent.",
                pool.unfinished or left,
            )
        elif not left:
            pool.shutdown(wait=False)


def call_after_write(notes: AttemptNotes | None, outcome: Outcome) -> None:
    """Run the attempt's ``on_written`` for this outcome here and now (what the thread runs;
    ``testing.drain()`` calls it in the test's own thread). Never raises."""
    if notes is None or notes.on_written is None or outcome not in _REPORTED:
        return
    try:
        notes.on_written(outcome.value)
    except Exception:
        log_exception(logger, "A callback after a written outcome (%s) raised", outcome.value)
