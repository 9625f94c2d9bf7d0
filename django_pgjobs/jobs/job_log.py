"""The ``django_pgjobs.jobs`` lines of the changes the API makes to jobs, outside any worker:
an enqueue at DEBUG, an operator's cancel, retry and requeue of dead letters at INFO (the
worker's lines for its attempts are :mod:`django_pgjobs.worker.outcomes`'). Each carries the
job as ``extra`` fields, as the worker's do, with ``action`` in place of ``outcome``.

An enqueue asks the logger first (:func:`logs_enqueues`, a cached level check), so at the
default levels it formats and builds nothing.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django_pgjobs import queries
from django_pgjobs.observability.display import counted

jobs_logger = logging.getLogger("django_pgjobs.jobs")

# A bulk requeue names this many of its jobs, and counts the rest (as the rescue's line does).
NAMED = 5


def _fields(
    job_id: uuid.UUID, job_name: str, queue: str, attempt: int, action: str
) -> dict[str, Any]:
    return {
        "job_id": str(job_id),
        "job_name": job_name,
        "queue": queue,
        "attempt": attempt,
        "action": action,
    }


def logs_enqueues() -> bool:
    return jobs_logger.isEnabledFor(logging.DEBUG)


def enqueued(job_id: uuid.UUID, job_name: str, queue: str) -> None:
    jobs_logger.debug(
        "Enqueued %s %s on queue %s",
        job_name, job_id, queue,
        extra=_fields(job_id, job_name, queue, 0, "enqueue"),
    )  # fmt: skip


def cancelled(job_id: uuid.UUID, job: queries.Changed) -> None:
    """``cancel_job()`` cancelled a pending or running job (a running one's handler is told; its
    worker's WARNING says so when it learns)."""
    jobs_logger.info(
        "Cancelled %s %s (it was %s) by cancel_job()",
        job.job_name, job_id, job.was,
        extra=_fields(job_id, job.job_name, job.queue, job.attempt, "cancel"),
    )  # fmt: skip


def retried(job_id: uuid.UUID, job: queries.Changed) -> None:
    """``retry_job()`` made a pending or cancelled job due now."""
    kept = "its attempts start afresh" if job.was == "cancelled" else "its attempts kept"
    jobs_logger.info(
        "%s %s is due now by retry_job() (it was %s: %s)",
        job.job_name, job_id, job.was, kept,
        extra=_fields(job_id, job.job_name, job.queue, job.attempt, "retry"),
    )  # fmt: skip


def requeued(job_id: uuid.UUID, job: queries.Changed) -> None:
    """A dead letter back in the queue under its own id."""
    jobs_logger.info(
        "Requeued dead letter %s %s: due now, its attempts start afresh",
        job.job_name, job_id,
        extra=_fields(job_id, job.job_name, job.queue, job.attempt, "requeue"),
    )  # fmt: skip


def requeued_many(done: queries.Requeued) -> None:
    """Dead letters requeued by one statement (however many): one line, naming the first."""
    if not done.count:
        return
    named = ", ".join(str(job_id) for job_id in done.job_ids[:NAMED])
    more = done.count - min(len(done.job_ids), NAMED)
    jobs_logger.info(
        "Requeued %s (%s%s): due now, their attempts start afresh",
        counted(done.count, "dead letter"), named, f" and {more:,} more" if more else "",
        extra={
            "action": "requeue",
            "requeued": done.count,
            "job_ids": [str(job_id) for job_id in done.job_ids[:NAMED]],
        },
    )  # fmt: skip
