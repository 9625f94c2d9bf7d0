"""What a running handler may rely on: the attempt it runs, its progress reporter, and a way to
hand its job back to the queue itself.

These are the contract between the worker and the code it runs (handlers, the workflow runner):
the worker sets them up, the handler uses them, and neither reaches into the other's internals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from django_pgjobs.jobs.error_text import clean_text
from django_pgjobs.queries import ClaimedJob

logger = logging.getLogger("django_pgjobs.worker")

# The attempt a handler thread is running, for code that needs its lease (the workflow runner).
current_job: ContextVar[ClaimedJob | None] = ContextVar("pgjobs_current_job", default=None)


@dataclass
class AttemptNotes:
    """What a running handler tells the worker about its attempt beyond returning or raising
    (the Django Tasks runner uses it; a plain ``@job`` handler never needs to). Each attempt
    gets a fresh one in :data:`current_notes`."""

    # The return value to keep on the job (``result``), as JSON text; None: keep nothing.
    result: str | None = None
    # On failure: due again after this many seconds (the handler's own backoff) instead of
    # the retry policy's delay.
    retry_in: float | None = None
    # On failure: no retry whatever attempts are left; to the dead letters now.
    give_up: bool = False
    # Called once the attempt's outcome is committed, with the outcome's name ("completed",
    # "retried", "buried"; never for one dropped by fencing), in a thread of the worker's
    # own, never the loop's: receivers may be slow.
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
    writes the latest value, fenced to this attempt) and never raises into the handler.
    """

    def __init__(self, job: ClaimedJob, sink: ProgressSink) -> None:
        self._job = job
        self._sink = sink

    def __call__(self, progress: float, message: str | None = None) -> None:
        try:
            value = float(progress)
            if math.isnan(value):
                raise ValueError("progress is NaN")
            clamped = round(min(max(value, 0.0), 100.0))
            text = None if message is None else clean_text(str(message))
            self._sink(self._job, clamped, text)
        except Exception:
            logger.warning("Ignored a bad progress report from job %s", self._job.id, exc_info=True)
