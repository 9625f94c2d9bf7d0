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
    # A success whose workflow's wake-ups met an application's lock: written on its own from
    # then on, so that it holds back nothing else (Completer.write).
    alone: bool = False

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
    def batched(self) -> bool:
        """A success written in a batch with others (not one written alone)."""
        return self.succeeded and not self.alone

    @property
    def handed_back(self) -> float | None:
        return self.attempt.handed_back

    @property
    def notes(self) -> AttemptNotes:
        return self.attempt.notes or AttemptNotes()


def completion(done: Sequence[Done], *, bound: str | None) -> dict[str, Any]:
    """complete_jobs' arguments for these successful attempts: tokens, run times, results and
    the workflows they ended, each in the batch's order; ``bound``: the ``lock_timeout`` of
    those workflows' wake-ups (lock_waits.statement_bound)."""
    notes = [d.notes for d in done]
    results = [n.result for n in notes]
    endings = [None if n.workflow_ending is None else n.workflow_ending.text for n in notes]
    return {
        "tokens": [d.job.token for d in done],
        "took": [d.attempt.took for d in done],
        "results": results if any(r is not None for r in results) else None,
        "endings": endings if any(e is not None for e in endings) else None,
        "lock_timeout": bound,
    }


# How much JSON the kept values (results, workflows' endings) of one batch may add up to, before
# the one that passes it: each jsonb parameter of the statement holds at most 255 MiB, and
# jsonb's binary form can take six times the text of an array of small numbers. One value is
# at most MAX_KEPT_BYTES (tasks.runner, workflows.runtime), so a batch stays under twice this.
BATCH_BYTES = 16 * 1024 * 1024


def within_bytes(done: list[Done]) -> list[Done]:
    """The first of ``done`` whose kept values fit in BATCH_BYTES (at least one): the rest wait
    for the next write."""
    total = 0
    for i, d in enumerate(done):
        notes = d.attempt.notes
        if notes is None or (notes.result is None and notes.workflow_ending is None):
            continue
        total += len(notes.result or "") + (
            0 if notes.workflow_ending is None else len(notes.workflow_ending.text)
        )
        if total > BATCH_BYTES and i > 0:
            return done[:i]
    return done


def endings_dropped(written: Sequence[Done], dropped: frozenset[queries.Token]) -> None:
    """These attempts completed, but the workflows they ended were no longer running (cancelled
    meanwhile): those keep their cancel (and send no ``workflow_finished`` for this ending:
    workflows.lifecycle reads what the row says)."""
    for done in written:
        ending = done.notes.workflow_ending
        if ending is not None and done.job.token in dropped:
            logger.warning(
                "Result of workflow %s dropped: it was no longer running (cancelled, or deleted)",
                ending.workflow_id,
            )
