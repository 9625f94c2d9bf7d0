"""The successes a busy worker sends right behind a claim (Completer.claim).

Sent once the claim's reply is in, without waiting for theirs (queries.send_completion), they
are written while the loop thread makes the claim's rows into jobs and hands those to threads;
their reply is read before the claim returns. Written in the claim's own statement instead, the
server and the loop took turns: a one-process drain of no-op jobs ran 16% slower so
(benchmarks/README.md, the seventh round).

The claim has committed by then: its jobs must start whatever happens to the completions. A send
or a reply that fails leaves them buffered, written again later (in doubt if the connection
broke: that write may have committed); the next statement on a broken connection finds it.

Behind a claim that came back full the worker's next claim goes too, in the same pipeline
(queries.claim_behind): :attr:`Behind.following` holds it once the reply is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from django_pgjobs import queries
from django_pgjobs.worker import lock_waits
from django_pgjobs.worker.finished import Done, completion
from django_pgjobs.worker.in_doubt import InDoubt

logger = logging.getLogger("django_pgjobs.worker")


class Behind:
    """The successes sent behind one claim, until their reply is read."""

    def __init__(self, doubt: InDoubt) -> None:
        self._doubt = doubt
        self._sent: queries.SentCompletion | queries.ClaimBehind | None = None
        self._done: list[Done] = []
        self._failed = False
        # The claim sent behind the completions, once its reply is read (read()).
        self.following: queries.ClaimBehind | None = None

    def send(
        self,
        conn: psycopg.Connection[Any],
        done: list[Done],
        *,
        claim: dict[str, Any] | None = None,
    ) -> None:
        """Send the successes ``done`` and, with ``claim`` (queries.claim_jobs' arguments), the
        next claim behind them. A claim that cannot be sent is not: its lease token stays with
        the claims whose reply was lost (LoopConnection.expect_claim)."""
        if not done and claim is None:
            return
        bound = lock_waits.statement_bound(conn)
        try:
            if claim is None:
                self._sent = queries.send_completion(conn, **completion(done, bound=bound))
            else:
                tokens = completion(done, bound=bound) if done else {"tokens": []}
                self._sent = queries.ClaimBehind(conn, **tokens, claim=claim)
        except psycopg.Error:
            self._doubt.if_broken(conn, [d.job for d in done])
            logger.warning("Could not send the completions behind a claim", exc_info=True)
            self._failed = True
            return
        self._done = done

    def read(
        self,
        conn: psycopg.Connection[Any],
        completed: Callable[[psycopg.Connection[Any], Sequence[Done], queries.Completed], None],
        lock_met: Callable[[list[Done]], object],
    ) -> bool:
        """Wait for the reply, then hand ``completed`` the successes sent and the attempts the
        write matched (Completer._completed). False if the send or the write failed; one that
        gave up waiting for a lock (a wake-up of a workflow they ended) hands them to
        ``lock_met`` (Completer._lock_met), an expected turn, not logged as a failure."""
        if self._sent is None:
            return not self._failed
        if isinstance(self._sent, queries.ClaimBehind):
            self.following = self._sent  # read below: its reply comes with the completions'
        try:
            matched = self._sent.reply()
        except psycopg.errors.LockNotAvailable:
            lock_met(self._done)
            return False
        except psycopg.Error:
            if not self._done:  # only a claim went: its own reply says what became of it
                return True
            self._doubt.if_broken(conn, [d.job for d in self._done])
            logger.warning("Could not write the completions behind a claim", exc_info=True)
            return False
        if not self._done:
            return True
        try:
            completed(conn, self._done, matched)
        except psycopg.Error:
            logger.warning("Could not check the completions a claim did not match", exc_info=True)
        return True
