"""What became of an attempt, as the worker counts and logs it: the :class:`Outcome` names, the
:class:`Written` record the completer hands on once an outcome is committed, and the one log
line for each."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from django_pgjobs import queries

logger = logging.getLogger("django_pgjobs.worker")


class Outcome(enum.Enum):
    """What became of an attempt; the values are the names of :class:`WorkerStats` counters."""

    COMPLETED = "completed"
    RETRIED = "retried"
    BURIED = "buried"  # moved to the dead letters: that was its last attempt
    LOST = "lost"  # fenced out: rescued or cancelled meanwhile, so nothing was written
    HANDED_BACK = "handed_back"  # the handler gave the job back itself (a workflow waiting)
    SNOOZED = "snoozed"  # the handler raised Snooze: due again later, the attempt undone
    CANCELLED = "cancelled"  # the handler raised Cancel: the job ended cancelled


@dataclass(frozen=True)
class Written:
    """One attempt's outcome, now in the database."""

    job: queries.ClaimedJob
    outcome: Outcome
    error: str | None = None
    delay: float = 0.0  # until the job is due again, when it was retried, snoozed or handed back
    # LOST only: a write of this outcome lost its reply, and the rows show another outcome.
    in_doubt: bool = False


def log_outcome(written: Written, took: float) -> None:
    job, outcome = written.job, written.outcome
    error = (written.error or "").split("\n", 1)[0]
    if outcome is Outcome.COMPLETED:
        logger.info("Completed %s %s in %.3fs", job.job_name, job.id, took)
    elif outcome is Outcome.RETRIED:
        logger.warning(
            "Attempt %s/%s of %s %s failed (%s); retrying in %.1fs",
            job.attempt, job.max_attempts, job.job_name, job.id, error, written.delay,
        )  # fmt: skip
    elif outcome is Outcome.HANDED_BACK:
        logger.info("%s %s waits; due again in %.1fs", job.job_name, job.id, written.delay)
    elif outcome is Outcome.SNOOZED:
        logger.info(
            "%s %s snoozed; due again in %.1fs (attempt %s not counted)",
            job.job_name, job.id, written.delay, job.attempt,
        )  # fmt: skip
    elif outcome is Outcome.CANCELLED:
        logger.warning(
            "Job %s %s cancelled by its handler (attempt %s/%s): %s",
            job.job_name, job.id, job.attempt, job.max_attempts, error,
        )  # fmt: skip
    elif outcome is Outcome.BURIED and job.attempt < job.max_attempts:
        logger.error(
            "Job %s %s moved to the dead letters after attempt %s/%s: no retry can succeed: %s",
            job.job_name, job.id, job.attempt, job.max_attempts, error,
        )  # fmt: skip
    elif outcome is Outcome.BURIED:
        logger.error(
            "Job %s %s failed its last attempt (%s/%s) and moved to the dead letters: %s",
            job.job_name, job.id, job.attempt, job.max_attempts, error,
        )  # fmt: skip
    elif written.in_doubt:
        logger.warning(
            "Outcome of %s %s (attempt %s) unknown: the connection dropped while it was written, "
            "and the job has moved on since (rescued, cancelled or run again)",
            job.job_name, job.id, job.attempt,
        )  # fmt: skip
    else:
        logger.warning(
            "Outcome of %s %s (attempt %s) dropped: the job was rescued or cancelled meanwhile",
            job.job_name, job.id, job.attempt,
        )  # fmt: skip
