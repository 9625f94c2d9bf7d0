"""How an idle worker sleeps: until a handler reports, a stop is requested, a NOTIFY for one of
its queues (or a cancel of a running job) arrives, or a timeout passes."""

from __future__ import annotations

import contextlib
import enum
import os
import select
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from django_pgjobs import queries


class Woken(enum.Enum):
    RUNG = "rung"  # a handler finished or reported progress, a stop was requested, or a cancel
    NOTIFIED = "notified"  # new work in one of our queues
    TIMEOUT = "timeout"


class Wakeup:
    """A self-pipe plus the worker connection's socket, waited on together.

    ``ring()`` is safe from any thread and from a signal handler (one ``write``).
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        # One poll object for the worker's life (a busy worker waits thousands of times a
        # second); the connection's socket is re-registered when a reconnect changes it.
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)
        self._conn_fd: int | None = None
        self._armed = False
        # Attempts (job id, lease token) a cancel's NOTIFY named, until the loop takes them.
        self._cancelled: list[queries.Token] = []

    def ring(self, *, force: bool = False) -> None:
        """Wake the waiting loop. Unless ``force``, only if it is waiting: a busy worker's
        handlers finish thousands of times a second, and each write costs a system call."""
        if not (force or self._armed):
            return
        with contextlib.suppress(BlockingIOError):  # already full: it will wake anyway
            os.write(self._write, b"x")

    def wait(
        self,
        timeout: float,
        *,
        conn: psycopg.Connection[Any] | None,
        queues: Sequence[str],
        due_in: Callable[[], float | None] = lambda: None,
    ) -> Woken:
        """Block for at most ``timeout`` seconds, or less if ``due_in()`` says the loop has
        something to do sooner (0: now). ``conn`` is listening, or None to only poll."""
        # Armed before due_in() looks: an event after that look finds us armed and rings.
        self._armed = True
        try:
            soon = due_in()
            if soon is not None and soon <= 0:
                return Woken.RUNG
            return self._wait(
                timeout if soon is None else min(timeout, soon), conn=conn, queues=queues
            )
        finally:
            self._armed = False

    def take_cancelled(self) -> list[queries.Token]:
        """The attempts whose running jobs were cancelled, as NOTIFYs said since the last call."""
        cancelled, self._cancelled = self._cancelled, []
        return cancelled

    def _wait(
        self, timeout: float, *, conn: psycopg.Connection[Any] | None, queues: Sequence[str]
    ) -> Woken:
        # psycopg buffers notifications that arrived during other statements: check them first.
        if conn is not None and self._take_notifications(conn, queues):
            return Woken.NOTIFIED
        if self._cancelled:
            return Woken.RUNG
        fd = None if conn is None else conn.fileno()
        if fd != self._conn_fd:
            if self._conn_fd is not None:
                with contextlib.suppress(KeyError):
                    self._poll.unregister(self._conn_fd)
            if fd is not None:
                self._poll.register(fd, select.POLLIN)
            self._conn_fd = fd
        ready = {ready_fd for ready_fd, _ in self._poll.poll(max(timeout, 0.0) * 1000)}
        if self._read in ready:
            self._drain()
            return Woken.RUNG
        if conn is not None and ready:
            # Traffic on the socket may be a NOTIFY for another queue: that is not our work.
            return Woken.NOTIFIED if self._take_notifications(conn, queues) else Woken.RUNG
        return Woken.TIMEOUT

    def _take_notifications(self, conn: psycopg.Connection[Any], queues: Sequence[str]) -> bool:
        """Consume pending notifications; True if any was for one of ``queues`` (or all
        queues). Cancels are kept for :meth:`take_cancelled`."""
        relevant = False
        for note in conn.notifies(timeout=0):
            if note.channel == queries.CANCEL_CHANNEL:
                self._cancelled.extend(_cancelled_attempt(note.payload))
            elif not queues or note.payload in queues:
                relevant = True
        return relevant

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def _cancelled_attempt(payload: str) -> list[queries.Token]:
    """The attempt a cancel's payload names ('<job id>:<lease token>'); none if malformed (a
    NOTIFY anyone may send: it must not break the loop)."""
    job_id, _, token = payload.partition(":")
    try:
        return [(uuid.UUID(job_id), uuid.UUID(token))]
    except ValueError:
        return []
