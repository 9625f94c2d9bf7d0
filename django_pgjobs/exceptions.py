"""Every error django-pgjobs raises derives from :class:`PgJobsError`.

The input errors also derive from the builtin a caller would naturally catch (``ValueError``,
``TypeError``, ``LookupError``), so generic handling keeps working. :class:`JobControl` and its
subclasses are not errors: a handler raises them to choose its attempt's outcome.
"""

from __future__ import annotations

import math
from datetime import timedelta


class PgJobsError(Exception):
    """Base class of every django-pgjobs error."""


class InvalidJobError(PgJobsError, ValueError):
    """An argument to ``enqueue`` (or a handler option) is out of range or malformed, or a
    database alias (``using=``, ``PGJOBS["DATABASE"]``) is not PostgreSQL.

    Raised before anything is written, so a caller's transaction is still usable.
    """


class PayloadNotSerializable(PgJobsError, TypeError):
    """A payload cannot be stored as JSON exactly as given."""


class JobNotFound(PgJobsError, LookupError):
    """No job (or dead letter) has the given id.

    ``dead_lettered`` is True when the id is not in the queue because it is in the dead letters.
    """

    def __init__(self, message: str, *, dead_lettered: bool = False) -> None:
        super().__init__(message)
        self.dead_lettered = dead_lettered


class JobStateError(PgJobsError):
    """The job exists but is in a state the operation does not apply to."""


class HandlerAlreadyRegistered(PgJobsError):
    """Two different functions were registered under one job name."""


class WorkflowError(PgJobsError):
    """Base class of the workflow errors."""


class WorkflowNotFound(WorkflowError, LookupError):
    """No workflow has the given id."""


class WorkflowConflict(WorkflowError, ValueError):
    """A workflow id is already taken by a different workflow."""


class WorkflowStateError(WorkflowError):
    """The workflow is in a state the operation does not apply to."""


class WorkflowNonDeterminism(WorkflowError):
    """A re-executed workflow called a different step than the one recorded at that position:
    its code changed, or it branches on something other than its inputs and step results."""


class WorkflowSerializationError(PayloadNotSerializable):
    """A workflow's or step's input or output cannot be stored as JSON."""


class WorkflowCancelled(WorkflowError):
    """The workflow was cancelled (raised by ``get_result``)."""


class WorkflowDead(WorkflowError):
    """The workflow kept crashing its worker and was moved to the dead letters."""


class WorkflowTimeout(WorkflowError, TimeoutError):
    """A wait for a workflow's result ran out of time."""


class RecordedError(WorkflowError):
    """A recorded error whose exception class cannot be rebuilt in this process.

    ``type_name`` is the original class's dotted path, ``traceback`` the recorded traceback.
    """

    def __init__(self, type_name: str, message: str, traceback: str | None = None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.traceback = traceback


class WorkflowFailed(RecordedError):
    """The workflow failed with a ``BaseException`` that is not an ``Exception`` (``SystemExit``
    from argparse in a step, ``KeyboardInterrupt``): ``get_result()`` and ``run_workflow()``
    raise this in its place, because a caller's ``except Exception`` (and Django's request
    handling) would not catch the original. ``type_name`` is its dotted path."""

    def __init__(self, type_name: str, message: str, traceback: str | None = None) -> None:
        super().__init__(type_name, message, traceback)
        self.args = (f"The workflow failed with {type_name}: {message}",)


class NotInWorkflow(WorkflowError, RuntimeError):
    """A workflow-only function (recv, set_event, ...) was called outside a workflow."""


class WorkerIdInUse(PgJobsError):
    """A worker was started under the id of a worker that is still alive (``--worker-id``)."""


class PayloadNotDecodable(PgJobsError, ValueError):
    """A stored payload (or workflow input, or step checkpoint) is JSON PostgreSQL accepted but
    Python's ``json`` cannot decode: a number past Python's int digit limit (``1e5000``), or
    nesting deeper than its recursion limit. Recorded as the failure of the job (dead-lettered at
    once: no retry can succeed) or of the workflow; raised to a caller who asks for the value
    (``get_result()``, ``get_event()``), never handed out as if it were the value."""


class LeaseExpired(PgJobsError):
    """What a job's failure history records for an attempt whose worker stopped renewing its
    lease (it died, froze or lost the database) and was rescued. Never raised: it names the
    failure (a task's ``TaskError.exception_class``)."""


class ResultNotStorable(PgJobsError, TypeError):
    """A handler that keeps its return value (a Django task) returned something that cannot be
    stored as JSON; the attempt fails with this error, which says why."""


class WorkerShutdown(PgJobsError):
    """What a job's failure history records for an attempt still running when its worker's
    shutdown grace period ended (the job was handed back, due at once). Never raised."""


# The longest delay a handler may ask for (Snooze, Retry): a year is past any reset time or
# backoff worth waiting for, and keeps the due time far inside PostgreSQL's range.
MAX_DELAY = 366 * 24 * 3600.0


def _seconds(value: object, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_DELAY
    ):
        raise InvalidJobError(
            f"{what} must be a number of seconds or a timedelta, from 0 to {MAX_DELAY:.0f} (a "
            f"year); got {value!r}."
        )
    return float(seconds)


class JobControl(PgJobsError):
    """Raised by a handler to choose what becomes of its attempt: :class:`Snooze`,
    :class:`Retry`, :class:`Discard`, :class:`Cancel`.

    The worker (and a Django task's runner) acts on them; a handler called directly, outside a
    worker, simply raises them. Their ``args`` are what the constructor was given, so they
    pickle, and a workflow's recorded error rebuilds as the same class.
    """


class Snooze(JobControl):
    """Run the job again after ``seconds`` (a number or a timedelta, 0 to a year) as if this
    attempt had never started: no attempt is used, the error and its history are untouched.

    For an HTTP 429 with a reset time, or to hand the job back when the worker is stopping
    (``raise Snooze(0)``). ``max_attempts`` does not bound snoozes: a handler that always
    snoozes runs for ever; bound it with a deadline of its own (in the payload, say).
    """

    def __init__(self, seconds: float | timedelta) -> None:
        self.seconds = _seconds(seconds, "Snooze(seconds)")
        super().__init__(self.seconds)

    def __str__(self) -> str:
        return f"snoozed for {self.seconds:g}s"


class Retry(JobControl):
    """Fail this attempt and retry after ``delay`` (a number or a timedelta, 0 to a year; None:
    the job's usual backoff). The attempt counts: after the last one the job moves to the dead
    letters as usual. The error recorded is this exception (with its ``reason`` and, when
    raised ``from`` another, that one's traceback too)."""

    def __init__(self, reason: str = "", *, delay: float | timedelta | None = None) -> None:
        self.reason = reason
        self.delay = None if delay is None else _seconds(delay, "Retry(delay=...)")
        super().__init__(reason)


class Discard(JobControl):
    """Fail this attempt and move the job to the dead letters at once, attempts left or not
    (a payload no retry can fix). The error recorded is this exception, with ``reason``."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason)


class Cancel(JobControl):
    """End the job as ``cancelled``: never retried (``retry_job`` can still run it afresh). The
    error recorded is this exception, with ``reason``, and the attempt joins the job's error
    history (a task's ``errors``)."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason)


class JobTimeout(PgJobsError):
    """What a job's failure history records for an attempt that ran past its timeout (the job's,
    its handler's, its queue's or ``PGJOBS["TIMEOUT"]``): it was failed, retried or
    dead-lettered as usual, and its handler's thread abandoned or its process killed. Never
    raised."""
