"""What became of an attempt, as the worker counts and logs it: the :class:`Outcome` names, the
:class:`Written` record the completer hands on once an outcome is committed, and the one log
line for each."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from django_pgjobs import queries

# One line per state change of a job (the worker's own life is django_pgjobs.worker's): its
# own name, so that the per-job lines can be turned off or up on their own.
jobs_logger = logging.getLogger("django_pgjobs.jobs")


class Outcome(enum.Enum):
    """What became of an attempt; the values are the names of :class:`WorkerStats` counters."""

    COMPLETED = "completed"
    RETRIED = "retried"
    BURIED = "buried"  # moved to the dead letters: that was its last attempt
    LOST = "lost"  # fenced out: rescued or cancelled meanwhile, so nothing was written
    HANDED_BACK = "handed_back"  # the handler gave the job back itself (a workflow waiting)
    SNOOZED = "snoozed"  # the handler raised Snooze: due again later, the attempt undone
    CANCELLED = "cancelled"  # the handler raised Cancel: the job ended cancelled
    # Its handler never began (too late for its rate limit: worker.start_lag): given back, due
    # again at once, the attempt undone. Counted with the jobs given back unstarted.
    RELEASED = "released"


@dataclass(slots=True)  # not frozen: see worker.attempt.AttemptResult
class Written:
    """One attempt's outcome, now in the database."""

    job: queries.ClaimedJob
    outcome: Outcome
    error: str | None = None
    delay: float = 0.0  # until the job is due again, when it was retried, snoozed or handed back
    exception: str | None = None  # a failure's exception class path, when one was raised
    # LOST only: a write of this outcome lost its reply, and the rows show another outcome.
    in_doubt: bool = False


def job_fields(job: queries.ClaimedJob, **more: Any) -> dict[str, Any]:
    """A job's line's ``extra``: fields a JSON formatter picks up (``record.job_id``, ...)."""
    return {
        "job_id": str(job.id),
        "job_name": job.job_name,
        "queue": job.queue,
        "attempt": job.attempt,
        **more,
    }


def log_no_longer_ours(job: queries.ClaimedJob, *, ran: float) -> None:
    """The worker learnt, while the attempt's handler runs, that the job is not the attempt's
    any more: cancelled (an operator's ``cancel_job``), or rescued after its lease expired. The
    job's one line for it, at WARNING as a dropped outcome: what the handler still does is
    dropped, and its outcome is not logged again. ``ran``: seconds its handler had run (its
    ``duration``, so far)."""
    jobs_logger.warning(
        "%s %s (attempt %s/%s) was cancelled or taken over while its handler ran: the handler "
        "is told (is_cancelled()), and what it still does is dropped",
        job.job_name, job.id, job.attempt, job.max_attempts,
        extra=job_fields(job, outcome=Outcome.LOST.value, duration=ran),
    )  # fmt: skip


def log_outcome(written: Written, took: float, *, said_lost: bool = False) -> None:
    """One line per outcome on ``django_pgjobs.jobs``: a completion at INFO, a snooze or a
    workflow waiting at INFO, a retry, a cancel or a dropped outcome at WARNING, a dead letter
    at ERROR. Each carries the job's fields, ``outcome``, ``duration`` (seconds its handler ran)
    and, only when it is due again (retried, snoozed, handed back), ``delay``. ``said_lost``:
    :func:`log_no_longer_ours` already said this attempt lost its job, so its dropped outcome is
    not a second line (nor is one in doubt: the attempt had lost its job before the write, so
    the write was dropped)."""
    job, outcome = written.job, written.outcome
    level = _LEVELS[outcome]
    if not jobs_logger.isEnabledFor(level) or (outcome is Outcome.LOST and said_lost):
        return  # the common case at the worker's default verbosity: a completion, unlogged
    error = (written.error or "").split("\n", 1)[0]
    extra = job_fields(job, outcome=outcome.value, duration=took)
    if outcome in _DUE_AGAIN:
        # Only a job that will run again has a delay: a dead letter's failed write was given
        # the retry delay it would have had, which no retry will ever wait.
        extra["delay"] = written.delay
    if outcome is Outcome.COMPLETED:
        jobs_logger.info("Completed %s %s in %.3fs", job.job_name, job.id, took, extra=extra)
    elif outcome is Outcome.RETRIED:
        jobs_logger.warning(
            "Attempt %s/%s of %s %s failed (%s); retrying in %.1fs",
            job.attempt, job.max_attempts, job.job_name, job.id, error, written.delay,
            extra=extra,
        )  # fmt: skip
    elif outcome is Outcome.HANDED_BACK:
        jobs_logger.info(
            "%s %s waits; due again in %.1fs", job.job_name, job.id, written.delay, extra=extra
        )
    elif outcome is Outcome.SNOOZED:
        jobs_logger.info(
            "%s %s snoozed; due again in %.1fs (attempt %s not counted)",
            job.job_name, job.id, written.delay, job.attempt, extra=extra,
        )  # fmt: skip
    elif outcome is Outcome.RELEASED:
        jobs_logger.debug(
            "%s %s given back, not started (attempt %s not counted)",
            job.job_name, job.id, job.attempt, extra=extra,
        )  # fmt: skip
    elif outcome is Outcome.CANCELLED:
        jobs_logger.warning(
            "Job %s %s cancelled by its handler (attempt %s/%s): %s",
            job.job_name, job.id, job.attempt, job.max_attempts, error, extra=extra,
        )  # fmt: skip
    elif outcome is Outcome.BURIED and job.attempt < job.max_attempts:
        jobs_logger.error(
            "Job %s %s moved to the dead letters after attempt %s/%s: no retry can succeed: %s",
            job.job_name, job.id, job.attempt, job.max_attempts, error, extra=extra,
        )  # fmt: skip
    elif outcome is Outcome.BURIED:
        jobs_logger.error(
            "Job %s %s failed its last attempt (%s/%s) and moved to the dead letters: %s",
            job.job_name, job.id, job.attempt, job.max_attempts, error, extra=extra,
        )  # fmt: skip
    elif written.in_doubt:
        jobs_logger.warning(
            "Outcome of %s %s (attempt %s) unknown: the connection dropped while it was written, "
            "and the job has moved on since (rescued, cancelled or run again)",
            job.job_name, job.id, job.attempt, extra=extra,
        )  # fmt: skip
    else:
        jobs_logger.warning(
            "Outcome of %s %s (attempt %s) dropped: the job was rescued or cancelled meanwhile",
            job.job_name, job.id, job.attempt, extra=extra,
        )  # fmt: skip


_LEVELS = {
    Outcome.COMPLETED: logging.INFO,
    Outcome.RETRIED: logging.WARNING,
    Outcome.BURIED: logging.ERROR,
    Outcome.LOST: logging.WARNING,
    Outcome.HANDED_BACK: logging.INFO,
    Outcome.SNOOZED: logging.INFO,
    Outcome.CANCELLED: logging.WARNING,
    # Said as it happened (start_lag.log_begun_too_late, on django_pgjobs.worker).
    Outcome.RELEASED: logging.DEBUG,
}
# The outcomes after which the job runs again: the only ones whose line carries ``delay``.
_DUE_AGAIN = frozenset({Outcome.RETRIED, Outcome.SNOOZED, Outcome.HANDED_BACK, Outcome.RELEASED})


# What a failed attempt's write left its job as, by the status it shows (see confirmed).
_FAILURE_LEFT = {"pending": Outcome.RETRIED, "dead": Outcome.BURIED, "cancelled": Outcome.CANCELLED}


def confirmed(cur: queries.Cursor, written: Written) -> Written:
    """A LOST outcome whose earlier write lost its reply, as the rows show it: that write may
    have committed (and be why this one matched nothing), or not (in doubt)."""
    job, error = written.job, written.error
    found = queries.find_job_state(cur, job_id=job.id)
    if found is not None and found.attempt == job.attempt:
        # The attempt number and, for a failure, the exact error text written: what this
        # worker's write left behind, not a later attempt's.
        if error is None and found.status == "completed":
            return Written(job, Outcome.COMPLETED)
        outcome = _FAILURE_LEFT.get(found.status)
        if error is not None and found.error == error and outcome is not None:
            return Written(job, outcome, error=error, delay=written.delay)
    return Written(job, Outcome.LOST, error=error, delay=written.delay, in_doubt=True)
