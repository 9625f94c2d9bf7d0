"""Where a long-lived process hears of new work: the connection it LISTENs on, and proof that
notifications reach it.

PostgreSQL delivers a NOTIFY, at its sender's commit, to every session of the same database
that LISTENs on its channel. A transaction pooler (PgBouncer in transaction mode) keeps no
session for a client: a LISTEN lands on whichever server connection ran it, which goes back to
the pool and on to other clients, and what is sent to it never reaches the client that asked
(through PgBouncer 1.18, every notification was lost). So behind such a pooler a worker,
a scheduler and a waiting ``get_result()`` LISTEN on ``PGJOBS["LISTEN_DATABASE"]``, an alias
that goes straight to PostgreSQL (one connection each), while their statements, and the NOTIFYs
those send at commit, go through the pooler.

A worker or scheduler does not take that on trust. When its statements go through a pooler, or
it listens on a connection of its own, it sends a NOTIFY on one connection and waits for it on
the other (:func:`hears`). One that would not hear says so in a warning that names what to set,
does not LISTEN where it cannot hear (a LISTEN left on a pooled server session would go to other
clients), and finds new work by polling every ``POLL_INTERVAL``, as it does anyway when nothing
wakes it: slower, never stuck. Behind a pooler it also warns if the alias's ``OPTIONS`` make
psycopg prepare statements (see :mod:`django_pgjobs.database`).

A listening connection is a convenience, never a dependency: one that cannot be had costs the
process its wake-ups, not its work. Its connect is bounded (LISTEN_CONNECT_TIMEOUT), tries after
a failure are spaced further and further apart (:func:`retry_delay`), and an outside wait gives
up on it at its own deadline (:func:`open_within`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from django.db import connections

from django_pgjobs.conf import conf
from django_pgjobs.database import connect, through_pooler

# The channel of the probe, which nothing else LISTENs on: no worker wakes for it.
PROBE_CHANNEL = "pgjobs_probe"
# How long a probe's NOTIFY may take to arrive. On a healthy server it takes about a
# millisecond; one later than this means notifications are not heard in time to matter.
PROBE_SECONDS = 2.0
# A listening connection's connect is given up after this many seconds (libpq's
# connect_timeout, for each address of the host; an alias's OPTIONS may set less). A worker's
# loop and a scheduler open theirs between their statements, so a path that accepts the
# connection and never answers (a silent partition, a load balancer whose server is gone) holds
# them this long per try, where psycopg alone waits 130 s. A healthy server, over TLS too,
# answers in milliseconds; libpq counts whole seconds, 2 at least.
LISTEN_CONNECT_TIMEOUT = 3
# A dedicated listening connection that broke, or could not be made, is tried again after
# RETRY_SECONDS, then twice as long after each failed try in a row, up to RETRY_MAX_SECONDS (the
# process polls meanwhile): a dead path holds the loop for LISTEN_CONNECT_TIMEOUT once a minute.
RETRY_SECONDS = 5.0
RETRY_MAX_SECONDS = 60.0


def retry_delay(failures: int) -> float:
    """Seconds until the next try at a listening connection after ``failures`` (1 or more)
    failed tries in a row: the one that broke counts as the first."""
    doublings = min(max(failures - 1, 0), 16)  # 5 s * 2**16 is far past the cap
    return min(RETRY_SECONDS * float(2**doublings), RETRY_MAX_SECONDS)


def listen_alias(alias: str) -> str:
    """The alias to LISTEN on for notifications sent by statements on ``alias``."""
    return conf.LISTEN_DATABASE or alias


def hears(listener: psycopg.Connection[Any], sender: psycopg.Connection[Any]) -> bool:
    """Does a NOTIFY that ``sender`` commits reach ``listener`` within PROBE_SECONDS?

    Both are autocommit connections, and ``listener`` LISTENs on nothing else yet (the wait
    consumes what arrives). ``listener`` must reach PostgreSQL directly (the caller asks
    :func:`through_pooler` first): through a transaction pooler this LISTEN and the UNLISTEN
    after it can run on two server connections, and the first goes on listening for whichever
    client gets it next."""
    token = uuid.uuid4().hex
    listener.execute(f"LISTEN {PROBE_CHANNEL}")
    try:
        sender.execute("SELECT pg_notify(%s, %s)", [PROBE_CHANNEL, token], prepare=False)
        deadline = time.monotonic() + PROBE_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            for note in listener.notifies(timeout=left):
                if note.channel == PROBE_CHANNEL and note.payload == token:
                    return True
        return False
    finally:
        listener.execute(f"UNLISTEN {PROBE_CHANNEL}")


def prepares(alias: str) -> bool:
    """Does Django's connection ``alias`` prepare statements (its ``OPTIONS`` ask psycopg to)?"""
    options = connections[alias].settings_dict.get("OPTIONS") or {}
    return options.get("prepare_threshold") is not None


class Listening:
    """The connection a worker's loop or a scheduler waits on for ``channels``, next to the
    connection its statements go through (``alias``): that one itself, or a dedicated one to
    ``LISTEN_DATABASE``, reopened after it breaks. Used by one thread."""

    def __init__(
        self,
        alias: str,
        *,
        channels: Sequence[str],
        application_name: str,
        who: str,
        log: logging.Logger,
    ) -> None:
        self.alias = alias
        self.target = alias  # where to LISTEN: read from the settings at each attach()
        self.channels = channels
        self.application_name = application_name
        self.who = who
        self.log = log
        self.conn: psycopg.Connection[Any] | None = None
        self._statements: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0
        self._failures = 0  # failed tries at a dedicated connection in a row
        self._given_up = False

    @property
    def dedicated(self) -> bool:
        return self.target != self.alias

    def attach(self, statements: psycopg.Connection[Any]) -> None:
        """The statement connection (re)connected: listen on it, or on a dedicated connection
        (made now), once notifications are known to arrive there."""
        self.close()
        self.target = listen_alias(self.alias)
        self._statements, self._given_up = statements, False
        pooled = through_pooler(statements)
        if pooled and prepares(self.alias):
            self.log.warning(
                "%s: database %r goes through a connection pooler and its OPTIONS set "
                "prepare_threshold, so psycopg prepares statements that a transaction pooler "
                'runs on other server connections ("prepared statement ... does not exist", '
                "or another client's statement run instead). Set "
                "DATABASES[%r]['OPTIONS']['prepare_threshold'] = None.",
                self.who,
                self.alias,
                self.alias,
            )
        if self.dedicated:
            self._open_dedicated()
        elif not pooled:
            self._listen(statements)
        else:
            # Never LISTEN through a pooler to find out whether it keeps sessions: in
            # transaction mode the LISTEN and the UNLISTEN after it can run on two server
            # connections, and the first would go on listening for other clients.
            self._given_up = True
            self.log.warning(
                "%s does not listen for notifications: database %r goes through a connection "
                "pooler (PgBouncer?), where LISTEN is dropped or left on a server connection "
                "other clients get, so new work waits for the next poll (POLL_INTERVAL). Set "
                "PGJOBS['LISTEN_DATABASE'] to a DATABASES alias that connects straight to the "
                "same PostgreSQL database (one connection per worker and scheduler), or "
                "PGJOBS['POLL_ONLY'] = True to poll without listening (docs/howto/worker.md, "
                "Behind PgBouncer).",
                self.who,
                self.alias,
            )

    def connection(self) -> psycopg.Connection[Any] | None:
        """The connection to wait on now; None to poll. A dedicated one that broke is reopened
        here, once its pause (:func:`retry_delay`) is over."""
        if self.conn is not None and (self.conn.closed or self.conn.broken):
            self.dropped()
        if self.conn is None and self.dedicated and not self._given_up:
            self._open_dedicated()
        return self.conn

    def dropped(self) -> None:
        """After a database error: let go of a listening connection that broke."""
        conn = self.conn
        if conn is None or not (conn.closed or conn.broken):
            return
        if self.dedicated:
            self.log.warning("%s lost its listening connection; polling until it is back", self.who)
            self._back_off()
        self.close()

    def close(self) -> None:
        if self.conn is not None and self.dedicated:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None

    def _back_off(self) -> float:
        self._failures += 1
        delay = retry_delay(self._failures)
        self._retry_at = time.monotonic() + delay
        return delay

    def _open_dedicated(self) -> None:
        """One try at the LISTEN_DATABASE connection, between the caller's statements: it holds
        the caller for LISTEN_CONNECT_TIMEOUT at most if the path is dead, PROBE_SECONDS if
        notifications do not arrive, milliseconds otherwise."""
        statements = self._statements
        if statements is None or statements.closed or time.monotonic() < self._retry_at:
            return
        listener = None
        try:
            listener = connect(
                self.target,
                application_name=self.application_name,
                connect_timeout=LISTEN_CONNECT_TIMEOUT,
            )
            # Asked before any LISTEN: one through a transaction pooler, even the probe's, can
            # stay on a server connection that other clients get.
            pooled = through_pooler(listener)
            if not pooled:
                heard = hears(listener, statements)
                self._listen(listener)
        except psycopg.Error as exc:
            if listener is not None:
                listener.close()
            if statements.broken:
                raise  # the statement connection's own failure: the caller reconnects
            self.log.warning(
                "%s cannot listen on LISTEN_DATABASE %r (%s); polling, and trying again in %ss",
                self.who,
                self.target,
                str(exc).strip(),
                f"{self._back_off():g}",
            )
            return
        if pooled:
            self._given_up = True  # until the statement connection is made again (attach)
            listener.close()
            self.log.warning(
                "%s does not listen on LISTEN_DATABASE %r: it goes through a connection pooler "
                "too (PgBouncer?), where LISTEN is dropped or left on a server connection other "
                "clients get (a pooler in session mode cannot be told apart from one in "
                "transaction mode, so none is used). Point it straight at PostgreSQL. New work "
                "waits for the next poll (POLL_INTERVAL).",
                self.who,
                self.target,
            )
            return
        self._failures = 0
        if not heard:
            self.log.warning(
                "%s does not hear notifications on LISTEN_DATABASE %r: a NOTIFY sent through "
                "database %r did not arrive within %ss. Point it at the same PostgreSQL "
                "database as DATABASE. New work waits for the next poll (POLL_INTERVAL).",
                self.who,
                self.target,
                self.alias,
                PROBE_SECONDS,
            )

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        for channel in self.channels:
            conn.execute(f"LISTEN {channel}")
        self.conn = conn


def open_within(
    open_listener: Callable[[], psycopg.Connection[Any] | None], seconds: float | None
) -> psycopg.Connection[Any] | None:
    """What ``open_listener()`` (a connect, then a LISTEN) returns, or raises; TimeoutError if
    it has not returned within ``seconds`` (None: no limit but its own connect timeout's).

    For a wait with a deadline of its own (``get_result(timeout=1)``): libpq's connect_timeout
    counts whole seconds, 2 at least, and bounds the connect only, not the LISTEN after it. So
    the opening runs in a thread of its own, and a connection it makes after the caller gave up
    is closed there."""
    opening = _Opening(open_listener)
    return opening.result(seconds)


class _Opening:
    def __init__(self, open_listener: Callable[[], psycopg.Connection[Any] | None]) -> None:
        self._open_listener = open_listener
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._outcome: psycopg.Connection[Any] | BaseException | None = None
        threading.Thread(target=self._run, name="pgjobs listener opening", daemon=True).start()

    def result(self, seconds: float | None) -> psycopg.Connection[Any] | None:
        self._done.wait(seconds)
        with self._lock:
            if not self._done.is_set():
                self._abandoned = True
                raise TimeoutError("the listening connection took too long to open")
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def _run(self) -> None:
        outcome: psycopg.Connection[Any] | BaseException | None
        try:
            outcome = self._open_listener()
        except BaseException as exc:  # raised in the caller's thread
            outcome = exc
        with self._lock:
            if self._abandoned:
                if isinstance(outcome, psycopg.Connection):
                    outcome.close()
            else:
                self._outcome = outcome
                self._done.set()
