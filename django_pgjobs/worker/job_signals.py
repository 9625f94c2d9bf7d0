"""The signals a worker sends for its attempts (:mod:`django_pgjobs.signals`): ``job_started``
when a handler begins, and one or two for each outcome once it is committed (three for a
workflow's job moved to the dead letters: its workflow is dead); and those of its rescue's dead
letters.

They are sent where :mod:`.after_write` runs its callbacks (a thread of the worker's own, in the
order things happened; ``testing.drain()``: the test's thread). :func:`wanted` is asked first, on
the worker's own threads, so that a worker nobody listens to does nothing more per job.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.dispatch import Signal

from django_pgjobs import queries, signals
from django_pgjobs.queries import workflow_reads
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX
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


def wanted_for(outcome: Outcome) -> bool:
    """Whether any receiver waits for a signal that every ``outcome`` sends."""
    return any(signals.listened(signal) for signal in _SENT.get(outcome, ()))


def wanted(written: Written) -> bool:
    """Whether any receiver waits for what ``written`` sends."""
    if wanted_for(written.outcome):
        return True
    return (
        written.outcome is Outcome.BURIED
        and written.job.job_name.startswith(WORKFLOW_JOB_PREFIX)
        and signals.listened(signals.workflow_finished)
    )


def rescue_wanted() -> bool:
    """Whether any receiver waits for what a rescue's dead letters send."""
    return signals.job_dead_lettered.has_listeners() or signals.workflow_finished.has_listeners()


def send_started(job: queries.ClaimedJob, worker_id: str | None) -> None:
    _send(signals.job_started, job, worker_id, attempt=job.attempt, max_attempts=job.max_attempts)


def send_written(written: Written, took: float, worker_id: str | None, using: str) -> None:
    """The signals of a committed outcome; ``took``: seconds its handler ran; ``using``: the
    database alias the worker writes to (a dead workflow's name is read there)."""
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
            if job.job_name.startswith(WORKFLOW_JOB_PREFIX):
                send_workflows_dead([job.id], using)
    elif outcome is Outcome.CANCELLED:
        _send(signals.job_cancelled, job, worker_id, reason=_reason(written.error))
    elif outcome is Outcome.SNOOZED:
        _send(signals.job_snoozed, job, worker_id, attempt=job.attempt, delay=written.delay)


def send_rescued(dead: Sequence[queries.DeadLettered], using: str) -> None:
    """``job_dead_lettered`` for each job a rescue moved to the dead letters (no ``job_failed``:
    no worker saw the attempt fail), then ``workflow_finished`` for the workflows that made
    dead. ``worker_id`` is the dead worker's whose attempt it was."""
    for job in dead:
        signals.send_job(
            signals.job_dead_lettered,
            job_id=job.id,
            job_name=job.job_name,
            queue=job.queue,
            attempt=job.attempt,
            error=job.error,
            worker_id=job.worker_id,
        )
    workflow_jobs = [job.id for job in dead if job.job_name.startswith(WORKFLOW_JOB_PREFIX)]
    if workflow_jobs:
        send_workflows_dead(workflow_jobs, using)


def send_workflows_dead(dead_letter_ids: list[uuid.UUID], using: str) -> None:
    """``workflow_finished`` (status "dead") for each workflow these dead letters made dead
    (trigger pgjobs_failed_workflow): read from its row, only if anyone listens."""
    if not signals.workflow_finished.has_listeners():
        return
    with connections[using].cursor() as cur:
        dead = workflow_reads.killed_by(cur, dead_letter_ids)
    for workflow in dead:
        signals.send_workflow(
            signals.workflow_finished,
            workflow_id=workflow.workflow_id,
            name=workflow.name,
            status="dead",
            error=workflow.error,
        )


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
