"""How an idle worker sleeps: until a handler reports, a stop is requested, a NOTIFY for one of
its queues arrives, or a timeout passes."""

from __future__ import annotations

import contextlib
import enum
import os
import selectors
from collections.abc import Sequence
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

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already full: it will wake anyway
            os.write(self._write, b"x")

    def wait(
        self, timeout: float, *, conn: psycopg.Connection[Any] | None, queues: Sequence[str]
    ) -> Woken:
        """Block for at most ``timeout`` seconds. ``conn`` is listening, or None to only poll."""
        # psycopg buffers notifications that arrived during other statements: check them first.
        if conn is not None and _take_notifications(conn, queues):
            return Woken.NOTIFIED
        with selectors.DefaultSelector() as selector:
            selector.register(self._read, selectors.EVENT_READ)
            if conn is not None:
                selector.register(conn.fileno(), selectors.EVENT_READ)
            ready = {key.fd for key, _ in selector.select(max(timeout, 0.0))}
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
