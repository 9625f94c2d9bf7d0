"""The worker loop's own connection: opened, kept, and re-opened after it drops.

Autocommit (see :func:`django_pgjobs.database.connect`), listening for new jobs and for cancels
of running ones. It sets nothing for the session, which a pooler in transaction mode would
leave on a server connection for other clients: no statement of the loop waits for a job row
an application transaction holds (they skip it: queries.base.MINE), so no ``lock_timeout`` is
needed to keep the loop going. A reconnect gives back the jobs whose claim committed while its
reply was lost with the old connection.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from django_pgjobs import queries
from django_pgjobs.database import LISTEN_NAME, LOOP_NAME, connect
from django_pgjobs.listening import Listening
from django_pgjobs.observability.display import counted

logger = logging.getLogger("django_pgjobs.worker")

# Pauses after consecutive failed statements (and failed connects): a worker cut off from the
# database tries again at least every ERROR_BACKOFF[-1] seconds.
ERROR_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class LoopConnection:
    def __init__(self, *, alias: str, worker_id: str, queues: Sequence[str], listen: bool) -> None:
        self.alias = alias
        self.queues = queues
        self.worker_id = worker_id
        self.listen = listen
        self.conn: psycopg.Connection[Any] | None = None
        # LISTEN happens on this connection, or on one to LISTEN_DATABASE (a pooler's clients
        # cannot LISTEN): see django_pgjobs.listening.
        self.listening = (
            Listening(
                alias,
                channels=(queries.NOTIFY_CHANNEL, queries.CANCEL_CHANNEL),
                application_name=f"{LISTEN_NAME} {worker_id}",
                who=f"Worker {worker_id}",
                log=logger,
            )
            if listen
            else None
        )
        # Set when the connection broke or could not be made: the worker was cut off from
        # the database, and so, perhaps, were the others (see Housekeeper.back_from_outage).
        self.cut_off = False
        # Lease tokens of claims whose jobs never reached the worker, though the claim may
        # have committed: a reply lost with a broken connection, or unreadable (claim_token).
        self.lost_claims: list[uuid.UUID] = []
        self._consecutive_errors = 0

    @property
    def is_open(self) -> bool:
        return self.conn is not None and not self.conn.closed

    @property
    def broken(self) -> bool:
        """No connection, or one that can run nothing more (closed, or lost mid-statement)."""
        return self.conn is None or self.conn.closed or self.conn.broken

    def open(self, *, then: Callable[[psycopg.Connection[Any]], object] | None = None) -> int:
        """Connect; returns how many jobs the reconnect gave back: what claims whose jobs never
        reached the worker took, if they committed (see :meth:`claim_token`). ``then`` runs on
        the new connection before it is said to be connected (the worker's registration: a
        worker refused its id never said it connected)."""
        conn = connect(self.alias, application_name=f"{LOOP_NAME} {self.worker_id}")
        if self.listening is not None:
            try:
                self.listening.attach(conn)
            except psycopg.Error:
                conn.close()
                raise
        self.conn = conn
        try:
            released = self.give_back_lost()
        except psycopg.Error:
            self.conn = None
            conn.close()
            raise
        if then is not None:
            try:
                then(conn)
            except BaseException:
                # Not connected until it has: the next turn connects and tries again (a worker
                # left unregistered would claim while another may hold its id).
                self.conn = None
                conn.close()
                raise
        logger.info(
            "Worker %s connected (queues: %s)", self.worker_id, ", ".join(self.queues) or "all"
        )
        return released

    def give_back_lost(self) -> int:
        """Give back what the claims in :attr:`lost_claims` took, if they committed; returns how
        many jobs. Matched by those claims' lease tokens only, never by this worker's id
        (``queries.release_lost_claims``)."""
        if not self.lost_claims or self.conn is None:
            return 0
        released = queries.release_lost_claims(self.conn.cursor(), lease_tokens=self.lost_claims)
        self.lost_claims = []
        if released:
            logger.warning(
                "Gave back %s taken by claims whose reply was lost or could not be read",
                counted(released, "job"),
            )
        return released

    def listener(self) -> psycopg.Connection[Any] | None:
        """The connection to wait on for notifications now; None to poll."""
        return None if self.listening is None else self.listening.connection()

    @contextlib.contextmanager
    def claim_token(self) -> Iterator[uuid.UUID]:
        """The lease token for one claim, remembered until its jobs are the worker's
        (:meth:`received`). A claim that fails before then may have committed: what it took is
        given back at the next reconnect, or at the loop's next housekeeping when the connection
        still works (:meth:`give_back_lost`; an error on this side, reading the reply or handing
        out the jobs). Only an error the server answered, on a connection that still works,
        means nothing committed."""
        token = self.expect_claim()
        with self.awaiting(token):
            yield token

    @contextlib.contextmanager
    def awaiting(self, token: uuid.UUID) -> Iterator[None]:
        """While the reply of the claim of ``token`` (:meth:`expect_claim`) is read and its jobs
        handed out: the token is forgotten once the block ends, or at an error the server
        answered on a connection that still works (nothing committed); any other error leaves
        it to be given back."""
        try:
            yield
        except psycopg.Error as exc:
            if exc.sqlstate is not None and not self.broken:
                self.received(token)
            raise
        self.received(token)

    def expect_claim(self) -> uuid.UUID:
        """A lease token for one claim, remembered as :meth:`claim_token` does, for a claim sent
        outside such a block (one sent behind the completions: queries.claim_behind)."""
        token = uuid.uuid4()
        self.lost_claims.append(token)
        return token

    def received(self, token: uuid.UUID) -> None:
        """The claim of ``token`` came back and its jobs are the worker's: nothing to give back,
        whatever goes wrong after."""
        with contextlib.suppress(ValueError):
            self.lost_claims.remove(token)

    def succeeded(self) -> None:
        self._consecutive_errors = 0

    def failed(self, exc: psycopg.Error) -> float:
        """Note a failed statement; returns how long to pause. Lock timeouts, serialization
        failures and the like leave the connection usable; only a broken one is dropped (the
        next :meth:`open` reconnects)."""
        self._consecutive_errors += 1
        broken = self.broken
        logger.error(
            "Database error in worker %s (%s): %s",
            self.worker_id,
            "reconnecting" if broken else "will retry",
            exc,
        )
        if self.listening is not None:
            self.listening.dropped()
        if broken:
            self.cut_off = True
        if broken and self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None
        return ERROR_BACKOFF[min(self._consecutive_errors, len(ERROR_BACKOFF)) - 1]

    def close(self, *, deregister_instance: str | None) -> None:
        """Deregister the worker row of ``deregister_instance`` (None: it never registered) and
        close."""
        if self.listening is not None:
            self.listening.close()
        if self.conn is None:
            return
        with contextlib.suppress(psycopg.Error):
            self.give_back_lost()  # a claim that raised on this side, then the worker stopped
        if deregister_instance is not None:
            with contextlib.suppress(psycopg.Error):
                queries.deregister_worker(
                    self.conn.cursor(),
                    worker_id=self.worker_id,
                    instance_token=deregister_instance,
                )
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        self.conn = None


def pause(seconds: float, *, deadline: float | None) -> float:
    """``seconds``, cut short so it never runs past ``deadline`` (a monotonic time)."""
    if deadline is None:
        return seconds
    return min(seconds, max(deadline - time.monotonic(), 0.0))
