"""The signals a worker sends for its attempts (:mod:`django_pgjobs.signals`): ``job_started``
when a handler begins, and one or two for each outcome once it is committed.

They are sent where :mod:`.after_write` runs its callbacks (a thread of the worker's own, in the
order things happened; ``testing.drain()``: the test's thread). :func:`wanted` is asked first, on
the worker's own threads, so that a worker nobody listens to does nothing more per job.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from django_pgjobs import queries, signals
from django_pgjobs.worker.outcomes import Outcome, Written

# The signals each outcome sends, in this order. A LOST outcome was fenced out (the job moved
# on without it) and HANDED_BACK is a workflow suspending itself: neither is news of the job.
_SENT: dict[Outcome, tuple[Signal, ...]] = {
    Outcome.COMPLETED: (signals.job_succeeded,),
    Outcome.RETRIED: (signals.job_failed,),
    Outcome.BURIED: (signals.job_failed, signals.job_dead_lettered),
    Outcome.CANCELLED: (signals.job_cancelled,),
    Outcome.SNOOZED: (signals.job_snoozed,),
}


def wanted(outcome: Outcome) -> bool:
    """Whether any receiver waits for what ``outcome`` sends."""
    return any(signal.has_listeners() for signal in _SENT.get(outcome, ()))


def send_started(job: queries.ClaimedJob, worker_id: str | None) -> None:
    _send(signals.job_started, job, worker_id, attempt=job.attempt, max_attempts=job.max_attempts)


def send_written(written: Written, took: float, worker_id: str | None) -> None:
    """The signals of a committed outcome; ``took``: seconds its handler ran."""
    job, outcome = written.job, written.outcome
    if outcome is Outcome.COMPLETED:
        _send(signals.job_succeeded, job, worker_id, attempt=job.attempt, duration=took)
    elif outcome in (Outcome.RETRIED, Outcome.BURIED):
        retried = outcome is Outcome.RETRIED
        _send(
            signals.job_failed,
            job,
            worker_id,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            error=written.error,
            exception=written.exception,
            will_retry=retried,
            delay=written.delay if retried else 0.0,
            duration=took,
        )
        if not retried:
            _send(
                signals.job_dead_lettered, job, worker_id, attempt=job.attempt, error=written.error
            )
    elif outcome is Outcome.CANCELLED:
        _send(signals.job_cancelled, job, worker_id, reason=_reason(written.error))
    elif outcome is Outcome.SNOOZED:
        _send(signals.job_snoozed, job, worker_id, attempt=job.attempt, delay=written.delay)


def _send(signal: Signal, job: queries.ClaimedJob, worker_id: str | None, **kwargs: Any) -> None:
    signals.send_job(
        signal,
        job_id=job.id,
        job_name=job.job_name,
        queue=job.queue,
        **kwargs,
        worker_id=worker_id,
    )


_CANCEL = "django_pgjobs.exceptions.Cancel: "


def _reason(error: str | None) -> str | None:
    """What the handler's ``Cancel`` said, from the error text stored for it."""
    line = (error or "").split("\n", 1)[0]
    return line.removeprefix(_CANCEL) if line else None
