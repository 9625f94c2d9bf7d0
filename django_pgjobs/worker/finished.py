"""A finished attempt waiting in the completer's buffer for its outcome to be written."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from django_pgjobs import queries
from django_pgjobs.jobs.context import AttemptNotes
from django_pgjobs.worker.attempt import AttemptResult


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


def completion(done: Sequence[Done]) -> dict[str, Any]:
    """complete_jobs' arguments for these successful attempts: tokens, run times, results, each
    in the batch's order."""
    results = [d.notes.result for d in done]
    return {
        "tokens": [d.job.token for d in done],
        "took": [d.attempt.took for d in done],
        "results": results if any(r is not None for r in results) else None,
    }
