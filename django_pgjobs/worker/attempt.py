"""Running one attempt in a handler thread: the handler's arguments, async handlers, the
thread's kept connections, and the error captured whatever the handler does, with the outcome it
chose by raising :class:`~django_pgjobs.exceptions.JobControl`."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync

from django_pgjobs.database import connection_lost
from django_pgjobs.exceptions import Cancel, Discard, PayloadNotDecodable, Retry, Snooze
from django_pgjobs.jobs.context import (
    AttemptNotes,
    JobHandedBack,
    ProgressReporter,
    ProgressSink,
    RunningAttempt,
    current_job,
    current_notes,
    running_attempt,
)
from django_pgjobs.jobs.error_text import UNDESCRIBED_ERROR, describe_error, log_exception
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.tracing import jobs as tracing
from django_pgjobs.worker import handler_connections as connections

logger = logging.getLogger("django_pgjobs.worker")


# Slotted, not frozen: one is made per attempt on a handler thread, and a frozen dataclass's
# __init__ (an object.__setattr__ per field) cost 4.8 us against 0.7 (measured; so Done, Written).
@dataclass(slots=True)
class AttemptResult:
    took: float  # seconds the handler ran
    error: str | None = None  # the failure as stored on the job; None when it succeeded
    handed_back: float | None = None  # the handler gave the job back, due again in this long
    snoozed: float | None = None  # it raised Snooze: due again in this long, attempt undone
    cancelled: bool = False  # it raised Cancel: the job ends cancelled (``error`` says why)
    connection_lost: bool = False  # it failed because a database connection was lost
    exception: str | None = None  # the class path of what the handler raised
    # What the handler said about its attempt (its result, its own backoff), if anything.
    notes: AttemptNotes | None = None
    # Not begun: it would have at this time.monotonic(), too late for its rate limit (the
    # ``begin`` of run_attempt said so). The job goes back, its attempt undone.
    too_late: float | None = None


def class_path(exc: BaseException) -> str | None:
    """``module.QualName`` of an exception's class (``builtins.ValueError``), as Django's
    ``TaskError.exception_class_path`` spells it; None if even that cannot be read."""
    try:
        cls = type(exc)
        return f"{cls.__module__}.{cls.__qualname__}"
    except Exception:
        return None


def run_attempt(
    handler: JobHandler | None,
    job: ClaimedJob,
    progress: ProgressSink,
    attempt: RunningAttempt | None = None,
    begin: Callable[[float], bool] | None = None,
) -> AttemptResult:
    """Run ``job`` with ``handler`` and say how it went. Never raises: SystemExit and
    KeyboardInterrupt raised by a handler fail that job, not the worker, and an error that
    cannot be described is still recorded as a failure (with a fallback description).
    ``attempt``: the flags the worker sets for this attempt (cancelled, stopping). ``begin``
    is asked, with the time, as the last thing before the attempt begins: False, and it does
    not (``too_late``: a rate-limited job whose start was counted earlier, worker.start_lag).

    Traced (see :mod:`django_pgjobs.tracing.jobs`): the attempt is a span, current on this
    thread while the handler runs."""
    if attempt is not None and attempt.is_cancelled():
        # Claimed ahead, then cancelled or rescued before a thread was free: never started.
        # Its write (a snooze: undone, as if never claimed) is fenced out like any lost one's.
        return AttemptResult(took=0.0, snoozed=0.0)
    if begin is not None:
        now = time.monotonic()
        if not begin(now):
            return AttemptResult(took=0.0, too_late=now)
    traced = tracing.run_span(job)
    if traced is None:
        return _run(handler, job, progress, attempt)
    with traced as span:
        result = _run(handler, job, progress, attempt)
        tracing.ran(span, result, attempt)
    return result


def _run(
    handler: JobHandler | None,
    job: ClaimedJob,
    progress: ProgressSink,
    attempt: RunningAttempt | None,
) -> AttemptResult:
    started = time.monotonic()
    error: str | None = None
    exception: str | None = None
    handed_back: float | None = None
    snoozed: float | None = None
    cancelled = False
    lost = False
    notes = AttemptNotes()
    try:
        try:
            connections.before_job()
            if isinstance(job.payload, UndecodableJSON):
                # Never given to the handler; the completer buries the job at once.
                raise PayloadNotDecodable(f"payload cannot be decoded: {job.payload.error}")
            if handler is None:
                raise LookupError(f"No handler is registered for job name {job.job_name!r}.")
            call_handler(handler, job, ProgressReporter(job, progress, attempt), notes)
        except JobHandedBack as back:
            handed_back = back.delay
        except Snooze as snooze:
            snoozed = snooze.seconds
        except BaseException as exc:
            error = describe_error(exc)
            exception = class_path(exc)
            lost = connection_lost(exc)
            cancelled = _chosen(exc, notes)
            tracing.handler_raised(exc)
    except BaseException:
        # describe_error never raises; this is for what can strike anywhere (a MemoryError).
        error, exception, handed_back, lost = UNDESCRIBED_ERROR, None, None, False
        snoozed, cancelled = None, False
    took = time.monotonic() - started
    try:
        connections.after_job()
    except BaseException:
        log_exception(logger, "Checking the handler thread's database connections failed")
    return AttemptResult(
        took=took,
        error=error,
        handed_back=handed_back,
        snoozed=snoozed,
        cancelled=cancelled,
        connection_lost=lost,
        exception=exception,
        notes=notes,
    )


def _chosen(exc: BaseException, notes: AttemptNotes) -> bool:
    """Note the outcome a failing handler chose by raising it: Retry's delay (over a task's own
    backoff, which may even have said not to retry), Discard's dead letter. True for Cancel."""
    if isinstance(exc, Retry):
        notes.give_up = False
        if exc.delay is not None:
            notes.retry_in = exc.delay
    elif isinstance(exc, Discard):
        notes.give_up = True
    return isinstance(exc, Cancel)


def call_handler(
    handler: JobHandler,
    job: ClaimedJob,
    report: ProgressReporter,
    notes: AttemptNotes | None = None,
) -> Any:
    """Call the handler as its signature asks (the payload, and the reporter if it takes a
    second argument) with :data:`current_job` set to this attempt, :data:`current_notes` to
    ``notes`` (a fresh one if not given) and ``current_attempt()`` to the reporter's attempt."""
    reset = current_job.set(job)
    reset_notes = current_notes.set(notes if notes is not None else AttemptNotes())
    reset_attempt = running_attempt.set(report.attempt)
    try:
        return _call(handler, job, report)
    finally:
        running_attempt.reset(reset_attempt)
        current_notes.reset(reset_notes)
        current_job.reset(reset)


def _call(handler: JobHandler, job: ClaimedJob, report: ProgressReporter) -> Any:
    args: tuple[Any, ...] = (job.payload, report) if handler.wants_progress else (job.payload,)
    if handler.is_async:
        # async_to_sync, not asyncio.run: the ORM's thread-sensitive calls (acreate, aget ...)
        # then run on this handler thread, whose connections the worker closes after the job.
        return async_to_sync(handler.func)(*args)
    result = handler.func(*args)
    if inspect.isawaitable(result):
        return async_to_sync(_wait_for)(result)
    return result


async def _wait_for(awaitable: Any) -> Any:
    return await awaitable
