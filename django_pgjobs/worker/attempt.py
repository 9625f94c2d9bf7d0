"""Running one attempt in a handler thread: the handler's arguments, async handlers, the
thread's kept connections, and the error captured whatever the handler does."""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync

from django_pgjobs.database import connection_lost
from django_pgjobs.exceptions import PayloadNotDecodable
from django_pgjobs.jobs.context import (
    AttemptNotes,
    JobHandedBack,
    ProgressReporter,
    ProgressSink,
    current_job,
    current_notes,
)
from django_pgjobs.jobs.error_text import UNDESCRIBED_ERROR, describe_error, log_exception
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.queries import ClaimedJob
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.worker import handler_connections as connections

logger = logging.getLogger("django_pgjobs.worker")


@dataclass(frozen=True)
class AttemptResult:
    took: float  # seconds the handler ran
    error: str | None = None  # the failure as stored on the job; None when it succeeded
    handed_back: float | None = None  # the handler gave the job back, due again in this long
    connection_lost: bool = False  # it failed because a database connection was lost
    exception: str | None = None  # the class path of what the handler raised
    # What the handler said about its attempt (its result, its own backoff), if anything.
    notes: AttemptNotes | None = None


def class_path(exc: BaseException) -> str | None:
    """``module.QualName`` of an exception's class (``builtins.ValueError``), as Django's
    ``TaskError.exception_class_path`` spells it; None if even that cannot be read."""
    try:
        cls = type(exc)
        return f"{cls.__module__}.{cls.__qualname__}"
    except Exception:
        return None


def run_attempt(
    handler: JobHandler | None, job: ClaimedJob, progress: ProgressSink
) -> AttemptResult:
    """Run ``job`` with ``handler`` and say how it went. Never raises: SystemExit and
    KeyboardInterrupt raised by a handler fail that job, not the worker, and an error that
    cannot be described is still recorded as a failure (with a fallback description)."""
    started = time.monotonic()
    error: str | None = None
    exception: str | None = None
    handed_back: float | None = None
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
            call_handler(handler, job, ProgressReporter(job, progress), notes)
        except JobHandedBack as back:
            handed_back = back.delay
        except BaseException as exc:
            error = describe_error(exc)
            exception = class_path(exc)
            lost = connection_lost(exc)
    except BaseException:
        # describe_error never raises; this is for what can strike anywhere (a MemoryError).
        error, exception, handed_back, lost = UNDESCRIBED_ERROR, None, None, False
    took = time.monotonic() - started
    try:
        connections.after_job()
    except BaseException:
        log_exception(logger, "Checking the handler thread's database connections failed")
    return AttemptResult(
        took=took,
        error=error,
        handed_back=handed_back,
        connection_lost=lost,
        exception=exception,
        notes=notes,
    )


def call_handler(
    handler: JobHandler,
    job: ClaimedJob,
    report: ProgressReporter,
    notes: AttemptNotes | None = None,
) -> Any:
    """Call the handler as its signature asks (the payload, and the reporter if it takes a
    second argument) with :data:`current_job` set to this attempt and :data:`current_notes`
    to ``notes`` (a fresh one if not given)."""
    reset = current_job.set(job)
    reset_notes = current_notes.set(notes if notes is not None else AttemptNotes())
    try:
        return _call(handler, job, report)
    finally:
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
