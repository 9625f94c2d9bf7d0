"""What a worker did: counters of claims and outcomes, returned by ``run()`` and ``run_once()``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django_pgjobs.worker.outcomes import Outcome

logger = logging.getLogger("django_pgjobs.worker")


@dataclass
class WorkerStats:
    """What a worker (or one ``run_once``) did; tests assert on these."""

    claimed: int = 0
    completed: int = 0
    retried: int = 0
    buried: int = 0
    lost: int = 0
    handed_back: int = 0  # workflows that suspended themselves (sleep, recv, a child's result)
    snoozed: int = 0  # handlers that raised Snooze (the attempt not counted)
    cancelled: int = 0  # handlers that raised Cancel
    rescued: int = 0
    released: int = 0
    db_errors: int = 0

    def __sub__(self, other: WorkerStats) -> WorkerStats:
        return WorkerStats(**{k: getattr(self, k) - getattr(other, k) for k in vars(self)})

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


# Seconds between two summary lines of a busy worker.
SUMMARY_INTERVAL = 60.0

_SUMMED = (
    "completed",
    "retried",
    "buried",
    "cancelled",
    "snoozed",
    "handed_back",
    "released",
    "lost",
    "rescued",
)


class Summary:
    """One INFO line at most every :data:`SUMMARY_INTERVAL` seconds saying what the worker did
    since the previous one, where a line per job would cost a busy worker (see
    ``process.configure_logging``). Nothing when nothing happened."""

    def __init__(self, worker_id: str, *, now: float, interval: float = SUMMARY_INTERVAL) -> None:
        self._worker_id = worker_id
        self._interval = interval
        self._since = now
        self._last = WorkerStats()

    def maybe_log(self, stats: WorkerStats, *, now: float) -> None:
        if now - self._since < self._interval:
            return
        done = stats - self._last
        self._last, elapsed, self._since = WorkerStats(**vars(stats)), now - self._since, now
        counts = {name: getattr(done, name) for name in _SUMMED}
        if not any(counts.values()):
            return
        # This worker's attempts that ended (rescues end other workers' attempts), as a rate
        # only where it says something: "0.0 a second" for one dead letter in a minute does not.
        ended = sum(counts[name] for name in ("completed", "retried", "buried", "cancelled"))
        rate = ended / elapsed
        logger.info(
            "Worker %s, the last %.0fs: %s%s",
            self._worker_id,
            elapsed,
            ", ".join(f"{n:,} {_WORDS[name]}" for name, n in counts.items() if n),
            f" ({rate:,.1f} attempts ended a second)" if rate >= 0.05 else "",
            extra={
                "worker_id": self._worker_id,
                "seconds": elapsed,
                "attempts_per_second": rate,
                **counts,
            },
        )


_WORDS = {
    "completed": "completed",
    "retried": "retried",
    "buried": "dead-lettered",
    "cancelled": "cancelled",
    "snoozed": "snoozed",
    "handed_back": "handed back (workflows waiting)",
    "released": "given back unstarted",
    "lost": "dropped",
    "rescued": "rescued from dead workers",
}
