"""A job's spans: ``pgjobs enqueue <job name>`` (PRODUCER) around the write, and ``pgjobs run
<job name>`` (CONSUMER) around each attempt, on the thread (or ``--pool process`` child) that
calls the handler, so the handler's own spans are its children.

The enqueue span exists only inside a trace (a current span): the job then keeps that span's
context in ``trace_context``, and each of its runs, retries included, is a child of it (and
links to it). An enqueue outside any span writes NULL, and so do ``pgjobs_enqueue()``, a plain
INSERT and a schedule's tick: their runs start traces of their own, when the worker has a
TracerProvider. Attributes follow OpenTelemetry's messaging conventions where they fit
(``messaging.*``: the system ``pgjobs``, the queue as the destination, the job id as the
message id); the rest are ``pgjobs.*``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

from django_pgjobs.exceptions import Cancel
from django_pgjobs.jobs.timeouts import TIMEOUT_EXCEPTION
from django_pgjobs.tracing import otel

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from django_pgjobs.jobs.context import RunningAttempt
    from django_pgjobs.queries.base import ClaimedJob
    from django_pgjobs.worker.attempt import AttemptResult

SYSTEM = "pgjobs"


@contextmanager
def enqueue_span(row: dict[str, Any], *, count: int | None = None) -> Iterator[Span | None]:
    """Around writing the job ``row`` (or the ``count`` jobs of an ``enqueue_many``, which share
    it): inside a trace, a PRODUCER span, whose context goes in ``row["trace_context"]``; else
    nothing, and the column stays NULL."""
    row["trace_context"] = None
    if not otel.in_span():
        yield None
        return
    attributes: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "messaging.destination.name": row["queue"],
        "pgjobs.job.name": row["job_name"],
    }
    if count is not None:
        attributes["messaging.batch.message_count"] = count
    with otel.span(f"pgjobs enqueue {row['job_name']}", "producer", attributes) as span:
        row["trace_context"] = otel.carrier()
        yield span


def enqueued(span: Span | None, job_id: uuid.UUID, *, written: bool = True) -> None:
    """The enqueue span's job: its id, and whether a job holding the key was found instead
    (``pgjobs.job.existing``: nothing was written, that job keeps its own trace context)."""
    if span is None:
        return
    span.set_attribute("messaging.message.id", str(job_id))
    if not written:
        span.set_attribute("pgjobs.job.existing", True)


def run_span(job: ClaimedJob) -> AbstractContextManager[Span] | None:
    """The CONSUMER span of an attempt of ``job``, or None when there is nothing to trace (no
    API; or a job enqueued outside a trace run by a process that set no TracerProvider): the
    worker's per-job cost then ends here."""
    if not otel.INSTALLED or (job.trace_context is None and not otel.configured()):
        return None
    attributes: otel.Attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "pgjobs.job.name": job.job_name,
        "pgjobs.job.attempt": job.attempt,
        "pgjobs.job.max_attempts": job.max_attempts,
    }
    return otel.span(
        f"pgjobs run {job.job_name}", "consumer", attributes, carried=job.trace_context
    )


def handler_raised(exc: BaseException) -> None:
    """The handler raised ``exc``: an ``exception`` event on the run span (not for a
    :class:`Cancel`, an outcome the handler chose). Called on the handler's thread."""
    span = otel.current()
    if span is not None and not isinstance(exc, Cancel):
        otel.record(span, exc)


def ran(span: Span, result: AttemptResult, attempt: RunningAttempt | None = None) -> None:
    """Close the run span's account: ``pgjobs.job.outcome`` as the handler left it
    (``completed``, ``failed``, ``cancelled``, ``snoozed``, ``handed_back``; whether a failure
    is retried or buried is the worker's decision after the span), and status ERROR on a
    failure, described by the error's first line. An attempt the worker no longer held when
    its handler returned did not end that way, whatever the handler did: ``timed_out`` (status
    ERROR, ``error.type`` JobTimeout: the worker failed it at its timeout) or ``lost`` (it was
    cancelled or taken over meanwhile; its outcome was not recorded)."""
    if attempt is not None and attempt.is_cancelled():
        outcome = "timed_out" if attempt.timed_out else "lost"
        if attempt.timed_out:
            otel.failed(span, "The attempt ran past its timeout.", TIMEOUT_EXCEPTION)
    elif result.cancelled:
        outcome = "cancelled"
    elif result.error is not None:
        outcome = "failed"
        otel.failed(span, result.error.split("\n", 1)[0], result.exception)
    elif result.snoozed is not None:
        outcome = "snoozed"
    elif result.handed_back is not None:
        outcome = "handed_back"
    else:
        outcome = "completed"
    span.set_attribute("pgjobs.job.outcome", outcome)
