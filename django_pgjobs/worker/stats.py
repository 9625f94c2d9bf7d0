"""What a worker did: counters of claims and outcomes, returned by ``run()`` and ``run_once()``."""

from __future__ import annotations

from dataclasses import dataclass

from django_pgjobs.worker.outcomes import Outcome


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
