"""Progress reports of running attempts, written by the loop on its own connection.

Only the latest report of each attempt is kept: a handler that reports often costs one write per
flush, not one per call. A report never waits for a job row another transaction holds (an
application's ``SELECT ... FOR UPDATE``, or the handler's own ``atomic()`` around a task's
``save_metadata()``): that would stall the loop, its heartbeats and every other job. It is kept
and tried again shortly, unless a newer one replaces it first, and dropped once the attempt no
longer holds its job.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import psycopg

from django_pgjobs import queries

logger = logging.getLogger("django_pgjobs.worker")

# A report whose row another transaction held is tried again after this long.
HELD_RETRY = 0.5


@dataclasses.dataclass(frozen=True)
class Progress:
    job: queries.ClaimedJob
    progress: int
    message: str | None
    retry_at: float = 0.0  # monotonic: not before (a held row's report waits)


class ProgressReports:
    def __init__(self) -> None:
        self._latest: dict[Any, Progress] = {}  # per attempt (its lease token)

    def __bool__(self) -> bool:
        return bool(self._latest)

    def add(self, report: Progress) -> None:
        self._latest[report.job.token] = report

    def due_at(self) -> float | None:
        """When the earliest kept report may be written (monotonic); None if none is kept."""
        return min((r.retry_at for r in self._latest.values()), default=None)

    def write(self, conn: psycopg.Connection[Any], *, now: float) -> None:
        for token, report in list(self._latest.items()):
            if report.retry_at > now:
                continue
            del self._latest[token]
            try:
                written = queries.report_progress(
                    conn.cursor(), token=token, progress=report.progress, message=report.message
                )
            except psycopg.Error:
                if conn.broken or conn.closed:
                    raise
                # Progress is best effort: never let one report block the outcomes behind it.
                logger.warning("Dropped a progress report of job %s", report.job.id, exc_info=True)
                continue
            if written == "held":
                self._latest[token] = dataclasses.replace(report, retry_at=now + HELD_RETRY)
