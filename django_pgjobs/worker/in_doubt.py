"""Attempts whose outcome's write lost its reply: it may have committed.

A write whose connection broke (or that was sent and whose reply never came, queries.sent) may
have committed with only the reply lost: written again, it matches nothing, as its first write
ended the lease. Such attempts are kept here until a later write or read settles them, and an
outcome of theirs that matched nothing is checked against the rows before it is called lost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg

from django_pgjobs import queries
from django_pgjobs.worker import lock_waits
from django_pgjobs.worker.outcomes import Outcome, Written, confirmed

T = TypeVar("T")


class InDoubt:
    def __init__(self, on_written: Callable[[Written], None]) -> None:
        self._on_written = on_written
        self._tokens: set[queries.Token] = set()

    def __contains__(self, token: queries.Token) -> bool:
        return token in self._tokens

    def guarded(
        self,
        conn: psycopg.Connection[Any],
        jobs: Sequence[queries.ClaimedJob],
        write: Callable[[], T],
        *,
        bounded: bool = True,
    ) -> T:
        """Run a statement writing the outcomes of ``jobs`` (with ``bounded``, in a transaction
        whose lock waits are bounded: see :mod:`.lock_waits`). If the connection breaks, it may
        have committed all the same (only the reply was lost): those outcomes are in doubt."""
        try:
            if bounded:
                with lock_waits.bounded(conn):
                    return write()
            return write()
        except psycopg.Error:
            self.if_broken(conn, jobs)
            raise

    def if_broken(self, conn: psycopg.Connection[Any], jobs: Iterable[queries.ClaimedJob]) -> None:
        """A write of the outcomes of ``jobs`` failed: if its connection broke, they are in
        doubt."""
        if conn.closed or conn.broken:
            self._tokens.update(job.token for job in jobs)

    def cleared(self, jobs: Iterable[queries.ClaimedJob]) -> None:
        """A write matched these attempts: an earlier one of theirs that lost its reply had not
        committed."""
        if self._tokens:
            self._tokens.difference_update(job.token for job in jobs)

    def record(
        self,
        conn: psycopg.Connection[Any],
        written: Written,
        *,
        traceable: bool = True,
        checked: bool = False,
    ) -> bool:
        """Hand a written outcome on; a LOST one whose earlier write lost its reply is checked
        against the rows first: that write may be why this one matched nothing. One that is not
        ``traceable`` (a snooze undoes the attempt, leaving nothing to tell it from a later
        attempt's) stays in doubt. A LOST one whose attempt still holds its job was not written
        (another transaction held the row): False, and nothing is handed on (unless ``checked``:
        the caller found it no longer held)."""
        job = written.job
        if job.token in self._tokens:
            # Out of doubt only once the reads below have answered (one that fails leaves it).
            if written.outcome is Outcome.LOST and row_held(conn, job):
                self._tokens.discard(job.token)
                return False  # the lost write did not commit: the attempt still holds its job
            if written.outcome is Outcome.LOST and traceable:
                written = confirmed(conn.cursor(), written)
            elif written.outcome is Outcome.LOST:
                written = dataclasses.replace(written, in_doubt=True)
            self._tokens.discard(job.token)
        elif written.outcome is Outcome.LOST and not checked and row_held(conn, job):
            return False
        self._on_written(written)
        return True


def row_held(conn: psycopg.Connection[Any], job: queries.ClaimedJob) -> bool:
    """Did a write that matched nothing skip a row another transaction held (else: fenced)?"""
    return not queries.no_longer_held(conn.cursor(), tokens=[job.token])
