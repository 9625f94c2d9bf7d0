"""What handler threads report, buffered until the worker loop writes it.

Handler threads only append to an in-memory queue; the loop thread writes progress, then all
completions in one batched statement, then each failure. Anything not yet written stays buffered
across a database error and is written after the reconnect; fencing drops it if the job moved on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any, Literal

import psycopg

from django_pgjobs import queries

logger = logging.getLogger("django_pgjobs.worker")

Outcome = Literal["completed", "retried", "buried", "lost", "handed back"]


@dataclass(frozen=True)
class _Done:
    job: queries.ClaimedJob
    error: str | None
    # Set when the handler gave the job back itself (JobHandedBack): due again in this long.
    handed_back: float | None = None
    arrived: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class _Progress:
    job: queries.ClaimedJob
    progress: int
    message: str | None


@dataclass(frozen=True)
class Written:
    """One attempt's outcome, now in the database."""

    job: queries.ClaimedJob
    outcome: Outcome
    error: str | None = None
    delay: float = 0.0  # until the job is due again, when outcome is "retried" or "handed back"


class Outcomes:
    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._events: SimpleQueue[_Done | _Progress] = SimpleQueue()
        self._done: list[_Done] = []
        self._progress: dict[Any, _Progress] = {}  # latest per lease token
        self._signalled = False  # an outcome arrived that the loop has not collected yet

    # -- from handler threads ----------------------------------------------------------------

    def finished(
        self, job: queries.ClaimedJob, error: str | None, *, handed_back: float | None = None
    ) -> bool:
        """Queue an attempt's outcome; True if it is the first since the loop last looked (the
        loop then needs waking to start its batching clock)."""
        self._events.put(_Done(job, error, handed_back))
        first = not self._signalled
        self._signalled = True
        return first

    def progressed(self, job: queries.ClaimedJob, progress: int, message: str | None) -> None:
        self._events.put(_Progress(job, progress, message))
        self._wake()

    # -- from the loop thread ----------------------------------------------------------------

    def pending(self) -> bool:
        return bool(self._done or self._progress or not self._events.empty())

    def waiting(self) -> tuple[int, float] | None:
        """(outcomes waiting to be written, when the oldest arrived), or None if none are.
        Progress reports and failures count as due at once: they are rare and worth seeing."""
        self._collect()
        if not self._done and not self._progress:
            return None
        if self._progress or any(d.error is not None for d in self._done):
            return len(self._done) + len(self._progress), 0.0
        return len(self._done), self._done[0].arrived

    def write(
        self,
        conn: psycopg.Connection[Any],
        *,
        retry_delay: Callable[[queries.ClaimedJob], float],
        on_written: Callable[[Written], None],
    ) -> None:
        """Write everything reported so far; ``on_written`` hears about each outcome as soon as
        it is committed. A database error leaves the rest buffered for the next call."""
        self._collect()
        for token, progress in list(self._progress.items()):
            try:
                queries.report_progress(
                    conn.cursor(),
                    token=progress.job.token,
                    progress=progress.progress,
                    message=progress.message,
                )
            except psycopg.Error:
                if conn.broken or conn.closed:
                    raise
                # Progress is best effort: never let one report block the outcomes behind it.
                logger.warning(
                    "Dropped a progress report of job %s", progress.job.id, exc_info=True
                )
            del self._progress[token]
        for done in [d for d in self._done if d.handed_back is not None]:
            # Already written by the handler: only the worker's bookkeeping is left.
            on_written(Written(done.job, "handed back", delay=done.handed_back or 0.0))
        self._done = [d for d in self._done if d.handed_back is None]
        successes = [d.job for d in self._done if d.error is None]
        if successes:
            tokens = [job.token for job in successes]
            completed = set(queries.complete_jobs(conn.cursor(), tokens=tokens))
            self._done = [d for d in self._done if d.error is not None]
            for job in successes:
                on_written(Written(job, "completed" if job.id in completed else "lost"))
        while self._done:
            done = self._done[0]
            assert done.error is not None
            on_written(self.write_failure(conn, done.job, done.error, delay=retry_delay(done.job)))
            self._done.pop(0)

    def take_successes(self) -> list[queries.ClaimedJob]:
        """Remove and return the successful attempts waiting to be written, for a caller that
        writes them in its own statement (complete_and_claim); see :meth:`give_back`."""
        self._collect()
        successes = [d.job for d in self._done if d.error is None and d.handed_back is None]
        self._done = [d for d in self._done if d.error is not None or d.handed_back is not None]
        return successes

    def give_back(self, jobs: list[queries.ClaimedJob]) -> None:
        """Successes taken by :meth:`take_successes` whose statement failed: write them later."""
        self._done[:0] = [_Done(job, None) for job in jobs]

    def write_failure(
        self, conn: psycopg.Connection[Any], job: queries.ClaimedJob, error: str, *, delay: float
    ) -> Written:
        """Record one failed attempt now: retried after ``delay``, buried, or lost (fenced)."""
        outcome = queries.fail_job(conn.cursor(), token=job.token, error=error, delay=delay)
        return Written(job, outcome, error=error, delay=delay)

    def _collect(self) -> None:
        self._signalled = False
        while True:
            try:
                event = self._events.get_nowait()
            except Empty:
                return
            if isinstance(event, _Progress):
                self._progress[event.job.lease_token] = event
            else:
                self._done.append(event)
