"""A finished attempt waiting in the completer's buffer for its outcome to be written."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

from django_pgjobs import queries
from django_pgjobs.jobs.context import AttemptNotes
from django_pgjobs.worker.attempt import AttemptResult

logger = logging.getLogger("django_pgjobs.workflows")


@dataclasses.dataclass(slots=True)  # not frozen: see AttemptResult
class Done:
    job: queries.ClaimedJob
    attempt: AttemptResult
    arrived: float = dataclasses.field(default_factory=time.monotonic)
    # Not before this (monotonic): its row was held by another transaction at the last write;
    # how many writes found it so.
    retry_at: float = 0.0
    holds: int = 0
    told: bool = False  # that its outcome waits for another transaction was logged

    @property
    def error(self) -> str | None:
        return self.attempt.error

    @property
    def succeeded(self) -> bool:
        """Completed: not failed, snoozed, cancelled or never begun (nor handed back: settled
        first)."""
        attempt = self.attempt
        return attempt.error is None and attempt.snoozed is None and attempt.too_late is None

    @property
    def handed_back(self) -> float | None:
        return self.attempt.handed_back

    @property
    def notes(self) -> AttemptNotes:
        return self.attempt.notes or AttemptNotes()


def completion(done: Sequence[Done], *, lock_timeout: str | None) -> dict[str, Any]:
    """complete_jobs' arguments for these successful attempts: tokens, run times, results and
    the workflows they ended, each in the batch's order; ``lock_timeout`` bounds the lock waits
    of those workflows' wake-ups (None: inside a caller's transaction, which it would outlast)."""
    notes = [d.notes for d in done]
    results = [n.result for n in notes]
    endings = [None if n.workflow_ending is None else n.workflow_ending.text for n in notes]
    return {
        "tokens": [d.job.token for d in done],
        "took": [d.attempt.took for d in done],
        "results": results if any(r is not None for r in results) else None,
        "endings": endings if any(e is not None for e in endings) else None,
        "lock_timeout": lock_timeout,
    }


def endings_dropped(written: Sequence[Done], dropped: frozenset[queries.Token]) -> None:
    """These attempts completed, but the workflows they ended were no longer running (cancelled
    meanwhile): what those keep is their cancel, and no ``workflow_finished`` is sent."""
    for done in written:
        ending = done.notes.workflow_ending
        if ending is not None and done.job.token in dropped:
            ending.dropped = True
            logger.warning("Result of workflow %s dropped: it was cancelled", ending.workflow_id)
