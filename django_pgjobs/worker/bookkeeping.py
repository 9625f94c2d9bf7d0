"""What the worker does once an attempt's outcome is committed: it counts it, paces by it, logs
it and hands it to :mod:`.after_write` (the attempt's callback, signals, metrics).

The completer calls it on the loop thread: :meth:`Bookkeeper.written` for each outcome, and
:meth:`Bookkeeper.completed` for the successes one statement wrote, which a busy worker counts in
thousands a second and which, at the worker's defaults, nothing else hears of. The loop hands it
each turn of housekeeping's report (:meth:`Bookkeeper.housekept`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django_pgjobs import queries
from django_pgjobs.worker.after_write import AfterWrite
from django_pgjobs.worker.housekeeping import HousekeepingReport
from django_pgjobs.worker.inflight import InFlight, mark_no_longer_ours
from django_pgjobs.worker.outcomes import Outcome, Written, jobs_logger, log_outcome
from django_pgjobs.worker.pacing import Pacing
from django_pgjobs.worker.stats import WorkerStats

# Outcomes after which the job is pending again, due after the outcome's delay.
_REQUEUED = (Outcome.RETRIED, Outcome.HANDED_BACK, Outcome.SNOOZED, Outcome.RELEASED)


class Bookkeeper:
    """``inflight``: the worker's attempts by token (an attempt leaves it once its outcome is
    written); ``restricted``: whether flow control applied at the last claim."""

    def __init__(
        self,
        *,
        worker_id: str,
        stats: WorkerStats,
        pacing: Pacing,
        inflight: dict[queries.Token, InFlight],
        after_write: AfterWrite,
        restricted: Callable[[], bool],
    ) -> None:
        self._worker_id = worker_id
        self._stats = stats
        self._pacing = pacing
        self._inflight = inflight
        self._after_write = after_write
        self._restricted = restricted

    def written(self, written: Written) -> None:
        """An outcome was written: count it, pace by it, log it, hand it on."""
        outcome = written.outcome
        entry = self._inflight.pop(written.job.token, None)
        took = handler_time(entry)
        self._stats.count(outcome)
        self._attempts_ended()
        if outcome in _REQUEUED:
            self._pacing.requeued(written.delay, now=time.monotonic())
        log_outcome(written, took, said_lost=entry is not None and entry.lost_logged)
        notes = entry.notes if entry is not None else None
        self._after_write.written(notes, written, took, self._worker_id)

    def completed(self, jobs: list[queries.ClaimedJob]) -> None:
        """These successes were written: :meth:`written` for each, with what they share done
        once; one that no line, callback, signal or metric hears of costs a look-up."""
        if not jobs:
            return
        entries = [self._inflight.pop(job.token, None) for job in jobs]
        self._stats.completed += len(jobs)
        self._attempts_ended()
        told = jobs_logger.isEnabledFor(logging.INFO) or self._after_write.hears_completions()
        for job, entry in zip(jobs, entries, strict=True):
            notes = entry.notes if entry is not None else None
            if not (told or (notes is not None and notes.on_written is not None)):
                continue
            written, took = Written(job, Outcome.COMPLETED), handler_time(entry)
            log_outcome(written, took)
            self._after_write.written(notes, written, took, self._worker_id)

    def housekept(self, report: HousekeepingReport) -> None:
        """A turn of housekeeping: count and log what it did, tell the attempts it found no
        longer ours, hand its rescues on (metrics, signals)."""
        self._stats.released += report.given_back
        report.log()
        mark_no_longer_ours(self._inflight.values(), report.lost)
        self._stats.rescued += report.rescued_total
        self._after_write.rescued(report)
        if report.rescued or report.rescued_unstarted:
            self._pacing.maybe_work = True  # jobs of dead workers are due again

    def _attempts_ended(self) -> None:
        # Under flow control an attempt of ours that ended may be the room the next claim needs.
        self._pacing.maybe_work = self._pacing.maybe_work or self._restricted()
        self._pacing.attempt_ended()


def handler_time(entry: InFlight | None) -> float:
    """Seconds the attempt's handler ran (since it was claimed, if it never reported)."""
    if entry is None:
        return 0.0
    return entry.took if entry.took is not None else time.monotonic() - entry.started_at
