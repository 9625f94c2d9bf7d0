"""Calling a handler: argument shape, async handlers, progress reports and error capture."""

from __future__ import annotations

import inspect
import logging
import math
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from asgiref.sync import async_to_sync

from django_pgjobs.queries import ClaimedJob
from django_pgjobs.registry import JobHandler

logger = logging.getLogger("django_pgjobs.worker")

# Tracebacks from deep recursion can be megabytes; the row needs the cause, not all of it.
MAX_ERROR_LENGTH = 32_000


# The attempt a handler thread is running, for code that needs its lease (the workflow runner).
current_job: ContextVar[ClaimedJob | None] = ContextVar("pgjobs_current_job", default=None)


class JobHandedBack(BaseException):
    """Raised by a handler that has already given its job back to the queue itself, in a fenced
    statement of its own (a workflow suspending until ``delay`` seconds from now): the worker
    writes no outcome for the attempt."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


class ProgressReporter:
    """The ``report_progress(progress, message=None)`` a handler receives.

    Best effort by contract: it clamps to 0..100, hands the value to the worker's loop (which
    writes the latest value, fenced to this attempt) and never raises into the handler.
    """

    def __init__(self, job: ClaimedJob, sink: Callable[[ClaimedJob, int, str | None], None]):
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


def call_handler(handler: JobHandler, job: ClaimedJob, report: ProgressReporter) -> Any:
    reset = current_job.set(job)
    try:
        return _call(handler, job, report)
    finally:
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


def clean_text(text: str) -> str:
    """Text PostgreSQL will store: NUL bytes and lone surrogates (from undecodable file names,
    say) made visible instead of rejected, so no message can make its outcome unwritable."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_error(exc: BaseException) -> str:
    """The error text stored on the job: the exception line first, then the traceback."""
    summary = "".join(traceback.format_exception_only(exc)).strip()
    full = "".join(traceback.format_exception(exc)).strip()
    text = clean_text(f"{summary}\n\n{full}")
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH // 2] + "\n...\n" + text[-MAX_ERROR_LENGTH // 2 :]
    return text
