"""The successes a busy worker sends right behind a claim (Completer.claim).

Sent once the claim's reply is in, without waiting for theirs (queries.send_completion), they
are written while the loop thread makes the claim's rows into jobs and hands those to threads;
their reply is read before the claim returns. Written in the claim's own statement instead, the
server and the loop took turns: a one-process drain of no-op jobs ran 16% slower so
(benchmarks/README.md, the seventh round).

The claim has committed by then: its jobs must start whatever happens to the completions. A send
or a reply that fails leaves them buffered, written again later (in doubt if the connection
broke: that write may have committed); the next statement on a broken connection finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from django_pgjobs import queries
from django_pgjobs.worker.finished import Done, completion
from django_pgjobs.worker.in_doubt import InDoubt

logger = logging.getLogger("django_pgjobs.worker")


class Behind:
    """The successes sent behind one claim, until their reply is read."""

    def __init__(self, doubt: InDoubt) -> None:
        self._doubt = doubt
        self._sent: queries.SentCompletion | None = None
        self._done: list[Done] = []
        self._failed = False

    def send(self, conn: psycopg.Connection[Any], done: list[Done]) -> None:
        if not done:
            return
        try:
            self._sent = queries.send_completion(conn, **completion(done))
        except psycopg.Error:
            self._doubt.if_broken(conn, [d.job for d in done])
            logger.warning("Could not send the completions behind a claim", exc_info=True)
            self._failed = True
            return
        self._done = done

    def read(
        self,
        conn: psycopg.Connection[Any],
        completed: Callable[[psycopg.Connection[Any], Sequence[Done], list[queries.Token]], None],
    ) -> bool:
        """Wait for the reply, then hand ``completed`` the successes sent and the attempts the
        write matched (Completer._completed). False if the send or the write failed."""
        if self._sent is None:
            return not self._failed
        try:
            matched = self._sent.reply()
        except psycopg.Error:
            self._doubt.if_broken(conn, [d.job for d in self._done])
            logger.warning("Could not write the completions behind a claim", exc_info=True)
            return False
        try:
            completed(conn, self._done, matched)
        except psycopg.Error:
            logger.warning("Could not check the completions a claim did not match", exc_info=True)
        return True
