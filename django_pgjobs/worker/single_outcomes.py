"""The outcomes of attempts that did not simply succeed, written one statement each: failed
(then retried or buried), buried at once, snoozed, or cancelled by their handler, or given back
unstarted (too late for a rate limit); or lost, when fencing drops them (the job moved on). The
completer writes them at once (Completer.write); its in-doubt bookkeeping (:mod:`.in_doubt`)
says what became of one whose reply was lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from django_pgjobs import queries
from django_pgjobs.jobs.retry import retry_delay
from django_pgjobs.stored_json import UndecodableJSON
from django_pgjobs.worker.finished import Done
from django_pgjobs.worker.in_doubt import InDoubt
from django_pgjobs.worker.outcomes import Outcome, Written


class SingleOutcomes:
    """Each method returns False when another transaction held the row: nothing was written."""

    def __init__(self, doubt: InDoubt) -> None:
        self._doubt = doubt

    def write(self, conn: psycopg.Connection[Any], done: Done) -> bool:
        """Write an attempt that did not simply succeed: snoozed, cancelled or failed. False
        when another transaction held its row (nothing written)."""
        attempt, job, error = done.attempt, done.job, done.error
        if attempt.snoozed is not None:
            return self.snooze(conn, job, delay=attempt.snoozed)
        if attempt.too_late is not None:
            return self.give_back(conn, job)
        assert error is not None
        if attempt.cancelled:
            return self.cancel(conn, job, error, exception=attempt.exception, took=attempt.took)
        if isinstance(job.payload, UndecodableJSON) or done.notes.give_up:
            # No retry can decode it, or the handler said none may: to the dead letters now,
            # attempts left or not.
            return self.bury(conn, job, error, exception=attempt.exception, took=attempt.took)
        delay = done.notes.retry_in
        if delay is None:
            delay = retry_delay(job.job_name, job.attempt)
        return self.fail(
            conn,
            job,
            error,
            delay=delay,
            spare=attempt.connection_lost,
            exception=attempt.exception,
            took=attempt.took,
        )

    def fail(
        self,
        conn: psycopg.Connection[Any],
        job: queries.ClaimedJob,
        error: str,
        *,
        delay: float,
        spare: bool = False,
        exception: str | None = None,
        took: float | None = None,
    ) -> bool:
        """Record one failed attempt now: retried after ``delay``, buried, or lost (fenced).
        ``spare``: it failed because a database connection was lost (see fail_job). False when
        another transaction held its row: nothing was written."""
        result = self._doubt.guarded(
            conn,
            [job],
            lambda: queries.fail_job(
                conn.cursor(),
                token=job.token,
                error=error,
                delay=delay,
                spare=spare,
                exception=exception,
                took=took,
                last=job.attempt >= job.max_attempts,  # a spare used already buries it too
            ),
        )
        written = Written(job, Outcome(result), error=error, delay=delay, exception=exception)
        return self._doubt.record(conn, written)

    def bury(
        self,
        conn: psycopg.Connection[Any],
        job: queries.ClaimedJob,
        error: str,
        *,
        exception: str | None = None,
        took: float | None = None,
    ) -> bool:
        """Record one failed attempt that no retry can cure: buried now, or lost (fenced)."""
        return self._end(conn, job, error, queries.bury_job, exception=exception, took=took)

    def snooze(
        self, conn: psycopg.Connection[Any], job: queries.ClaimedJob, *, delay: float
    ) -> bool:
        """Record a snoozed attempt now: undone and due again after ``delay``, or lost (fenced)."""
        result = self._doubt.guarded(
            conn, [job], lambda: queries.snooze_job(conn.cursor(), token=job.token, delay=delay)
        )
        return self._doubt.record(conn, Written(job, Outcome(result), delay=delay), traceable=False)

    def give_back(self, conn: psycopg.Connection[Any], job: queries.ClaimedJob) -> bool:
        """Record an attempt whose handler never began (too late for its rate limit): undone,
        due again at once, its start out of the rate limit's ledger; or lost (fenced)."""
        result = self._doubt.guarded(
            conn,
            [job],
            lambda: queries.release_jobs(
                conn.cursor(), tokens=[job.token], counted=[job.counted_at]
            ),
        )
        outcome = Outcome.RELEASED if result else Outcome.LOST
        return self._doubt.record(conn, Written(job, outcome), traceable=False)

    def cancel(
        self,
        conn: psycopg.Connection[Any],
        job: queries.ClaimedJob,
        error: str,
        *,
        exception: str | None = None,
        took: float | None = None,
    ) -> bool:
        """Record an attempt whose handler cancelled its job: cancelled now, or lost (fenced)."""
        return self._end(conn, job, error, queries.cancel_held_job, exception=exception, took=took)

    def _end(
        self,
        conn: psycopg.Connection[Any],
        job: queries.ClaimedJob,
        error: str,
        statement: Callable[..., str],
        *,
        exception: str | None,
        took: float | None,
    ) -> bool:
        """Write an attempt's end with ``statement`` (bury_job, cancel_held_job), fenced."""
        result = self._doubt.guarded(
            conn,
            [job],
            lambda: statement(
                conn.cursor(), token=job.token, error=error, exception=exception, took=took
            ),
        )
        return self._doubt.record(
            conn, Written(job, Outcome(result), error=error, exception=exception)
        )
