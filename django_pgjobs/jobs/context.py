"""What a running handler may rely on: the attempt it runs (and whether it still owns its job, and
whether its worker is stopping), its progress reporter, and a way to hand its job back to the
queue itself.

These are the contract between the worker and the code it runs (handlers, the workflow runner):
the worker sets them up, the handler uses them, and neither reaches into the other's internals.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django_pgjobs.jobs.error_text import clean_text
from django_pgjobs.queries import ClaimedJob

logger = logging.getLogger("django_pgjobs.worker")

# The attempt a handler thread is running, for code that needs its lease (the workflow runner).
current_job: ContextVar[ClaimedJob | None] = ContextVar("pgjobs_current_job", default=None)


class RunningAttempt:
    """What a running handler can ask about its attempt (:func:`current_attempt`, or its
    ``report_progress``): whether it still owns its job, and whether its worker is stopping.

    Both are flags the worker sets; reading them costs nothing, so a long handler can check
    them between units of work and stop early: return (its job completes), ``raise Cancel``, or
    ``raise Snooze(0)`` to hand the job back without using an attempt.
    """

    __slots__ = ("_lost", "_stopping", "_tell", "job", "timed_out")

    def __init__(self, job: ClaimedJob, *, stopping: threading.Event | None = None) -> None:
        self.job = job
        self._stopping = stopping
        # A plain flag, not an Event: one is made per job on the loop thread, nothing waits on
        # it, and an attribute store is atomic (an Event and its Condition cost 5% of a drain).
        self._lost = False
        # Why: the worker failed it for running past its timeout (its outcome then is not the
        # handler's), rather than a cancel or a takeover.
        self.timed_out = False
        self._tell: Callable[[], None] | None = None

    @property
    def job_id(self) -> uuid.UUID:
        return self.job.id

    @property
    def attempt(self) -> int:
        """This attempt's number, 1 for the first."""
        return self.job.attempt

    def is_cancelled(self) -> bool:
        """True once the worker knows this attempt no longer owns its job: it was cancelled (seen
        within milliseconds through a NOTIFY, or at the next heartbeat when the worker does not
        listen), or its lease expired and it was rescued, perhaps taken over by another worker
        (seen at the next heartbeat). It does not tell which: either way whatever the attempt
        still does is not recorded (its outcome, its progress, a task's metadata), so it may as
        well stop. Never turns back to False."""
        return self._lost

    @property
    def stopping(self) -> bool:
        """True once the worker was asked to stop (SIGTERM, SIGINT, ``request_stop()``): it
        waits for running handlers up to ``SHUTDOWN_GRACE`` seconds, then fails what still
        runs. A handler that stops early can ``raise Snooze(0)``: its job is due again at once,
        for another worker, and the attempt is not counted."""
        return self._stopping is not None and self._stopping.is_set()

    def no_longer_ours(self, *, timed_out: bool = False) -> None:
        """The worker found that this attempt no longer owns its job (see :meth:`is_cancelled`);
        ``timed_out``: because the worker failed it for running past its timeout."""
        self.timed_out = self.timed_out or timed_out
        self._lost = True
        tell = self._tell  # read after the flag is set: see tell_when_lost
        if tell is not None:
            tell()

    def tell_when_lost(self, tell: Callable[[], None]) -> None:
        """For a handler that runs elsewhere (``--pool process``): call ``tell`` on the thread
        that finds this attempt no longer owns its job, or now if it already does. ``tell`` may
        be called twice (set here just as the flag turns): it must only ever say so again."""
        self._tell = tell  # set before the flag is read, as no_longer_ours sets it before this
        if self._lost:
            tell()


# The attempt a handler thread is running, as its handler sees it (current_attempt()).
running_attempt: ContextVar[RunningAttempt | None] = ContextVar(
    "pgjobs_running_attempt", default=None
)


def current_attempt() -> RunningAttempt | None:
    """The attempt the calling handler runs, for code that has no ``report_progress`` at hand
    (``current_attempt().is_cancelled()``, ``.stopping``); None outside a handler run by a worker
    (or ``testing.drain()``), such as a handler called directly in a test."""
    return running_attempt.get()


@dataclass
class WorkflowEnding:
    """How the workflow an attempt ran ended (completed with its return value, or failed),
    written by the worker with its job's completion, in the same statement
    (queries.completions.ENDED_CTE): a workflow ends exactly when its job completes."""

    workflow_id: str
    # The ending as the completion's statement takes it: JSON text with the workflow's id
    # ("id"), status ("s") and, when there is one, its output ("o") or error ("e").
    text: str


@dataclass
class AttemptNotes:
    """What a running handler tells the worker about its attempt beyond returning or raising
    (the Django Tasks runner uses it; a plain ``@job`` handler never needs to). Each attempt
    gets a fresh one in :data:`current_notes`."""

    # The return value to keep on the job (``result``), as JSON text; None: keep nothing.
    result: str | None = None
    # The workflow this attempt ran ended (the workflow runner's): written with the completion.
    workflow_ending: WorkflowEnding | None = None
    # On failure: due again after this many seconds (the handler's own backoff, or what its
    # Retry asked for) instead of the retry policy's delay.
    retry_in: float | None = None
    # On failure: no retry whatever attempts are left (a Discard); to the dead letters now.
    give_up: bool = False
    # Called once the attempt's outcome is committed, with the outcome's name ("completed",
    # "retried", "buried", "cancelled"; never for one dropped by fencing, nor for a snooze),
    # in a thread of the worker's own, never the loop's: receivers may be slow.
    on_written: Callable[[str], None] | None = None


current_notes: ContextVar[AttemptNotes | None] = ContextVar("pgjobs_attempt_notes", default=None)


class JobHandedBack(BaseException):
    """Raised by a handler that has already given its job back to the queue itself, in a fenced
    statement of its own (a workflow suspending until ``delay`` seconds from now): the worker
    writes no outcome for the attempt."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


ProgressSink = Callable[[ClaimedJob, int, str | None], None]


class ProgressReporter:
    """The ``report_progress(progress, message=None)`` a handler receives as its optional second
    argument (annotate it with this class).

    Best effort by contract: it clamps to 0..100, hands the value to the worker's loop (which
    writes the latest value, fenced to this attempt) and never raises into the handler. It
    returns False once the attempt no longer owns its job (cancelled, or taken over: see
    :meth:`RunningAttempt.is_cancelled`), and then writes nothing; True otherwise (a bad value
    is logged and dropped). ``is_cancelled()`` and ``stopping`` are the attempt's.
    """

    def __init__(
        self, job: ClaimedJob, sink: ProgressSink, attempt: RunningAttempt | None = None
    ) -> None:
        self._job = job
        self._sink = sink
        self.attempt = attempt if attempt is not None else RunningAttempt(job)

    def __call__(self, progress: float, message: str | None = None) -> bool:
        if self.attempt.is_cancelled():
            return False
        try:
            value = float(progress)
            if math.isnan(value):
                raise ValueError("progress is NaN")
            clamped = round(min(max(value, 0.0), 100.0))
            text = None if message is None else clean_text(str(message))
            self._sink(self._job, clamped, text)
        except Exception:
            logger.warning("Ignored a bad progress report from job %s", self._job.id, exc_info=True)
        return True

    def is_cancelled(self) -> bool:
        return self.attempt.is_cancelled()

    @property
    def stopping(self) -> bool:
        return self.attempt.stopping
