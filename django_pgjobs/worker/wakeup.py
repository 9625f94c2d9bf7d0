"""How an idle worker sleeps: until a handler reports, a stop is requested, a NOTIFY for one of
its queues arrives, or a timeout passes."""

from __future__ import annotations

import contextlib
import enum
import os
import select
from collections.abc import Callable, Sequence
from typing import Any

import psycopg


class Woken(enum.Enum):
    RUNG = "rung"  # a handler finished or reported progress, or a stop was requested
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

    def _wait(
        self, timeout: float, *, conn: psycopg.Connection[Any] | None, queues: Sequence[str]
    ) -> Woken:
        # psycopg buffers notifications that arrived during other statements: check them first.
        if conn is not None and _take_notifications(conn, queues):
            return Woken.NOTIFIED
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
            return Woken.NOTIFIED if _take_notifications(conn, queues) else Woken.RUNG
        return Woken.TIMEOUT

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def _take_notifications(conn: psycopg.Connection[Any], queues: Sequence[str]) -> bool:
    """Consume pending notifications; True if any was for one of ``queues`` (or all queues)."""
    relevant = False
    for note in conn.notifies(timeout=0):
        if not queues or note.payload in queues:
            relevant = True
    return relevant
