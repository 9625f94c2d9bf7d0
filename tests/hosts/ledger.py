"""What the handlers run on the hosts recorded (``test.on_host``, ``test.held_on_host`` in
tests.testapp.jobs): for each job, every start and every end of a handler, on which host and
in which attempt. The tests count runs from these rows, never from the library's own records."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from tests.testapp.models import Run


@dataclass(frozen=True)
class Mark:
    host: str
    attempt: int
    at: datetime  # the worker's clock: all hosts share this machine's


@dataclass
class Ledger:
    started: dict[uuid.UUID, list[Mark]] = field(default_factory=lambda: defaultdict(list))
    finished: dict[uuid.UUID, list[Mark]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls) -> Ledger:
        ledger = cls()
        for job_id, label, attempt, at in Run.objects.values_list(
            "job_id", "label", "attempt_seen", "created_at"
        ):
            host, _, what = label.partition(":")
            marks = {"started": ledger.started, "finished": ledger.finished}.get(what)
            if marks is not None:
                marks[job_id].append(Mark(host, attempt, at))
        return ledger

    def runs(self, what: str = "finished") -> Counter[uuid.UUID]:
        """How many times each job's handler started or finished."""
        marks = self.started if what == "started" else self.finished
        return Counter({job_id: len(found) for job_id, found in marks.items()})

    def per_host(self) -> Counter[str]:
        """Finished runs per host."""
        return Counter(mark.host for found in self.finished.values() for mark in found)

    def busy_seconds(self) -> dict[str, float]:
        """Seconds each host's handlers ran, from each finished run's start in the same
        attempt on the same host."""
        busy: dict[str, float] = defaultdict(float)
        for job_id, ends in self.finished.items():
            for end in ends:
                starts = [
                    mark.at
                    for mark in self.started[job_id]
                    if (mark.host, mark.attempt) == (end.host, end.attempt)
                ]
                busy[end.host] += (end.at - max(starts)).total_seconds()
        return busy
