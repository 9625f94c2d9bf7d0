"""A statement sent without waiting for its reply, which is read later.

A worker's loop thread runs its statements one after another on one connection, and psycopg's
``execute()`` returns only once the reply is in: while the server runs a statement the loop's
Python waits, and while the loop's Python runs the server has nothing to do. Measured on a
one-process drain of no-op jobs, the two took turns, each idle while the other worked. A
statement sent here (libpq's asynchronous calls, through psycopg's public ``pq`` wrapper) runs
on the server while the caller goes on; :meth:`Sent.reply` then waits for what is left of it.

Between the two, nothing else may use the connection (libpq runs one statement at a time
outside pipeline mode): the caller reads the reply before its next statement, whatever happens
in between. The statement runs in an implicit transaction of its own (the protocol's Sync ends
it), as an autocommit ``execute()`` would, and is never prepared, so a transaction pooler
(PgBouncer in transaction mode) passes it like any other. Its parameters are texts and its reply
one column of integers: what the worker's completions need (queries.completions.send_completion).
"""

from __future__ import annotations

import contextlib
import re
import select
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import pq

_NAMED = re.compile(r"%\((\w+)\)s|%%")


def numbered(sql: str, names: Sequence[str]) -> bytes:
    """``sql`` with psycopg's ``%(name)s`` placeholders as the protocol's ``$1, $2...``, in the
    order of ``names`` (each must be one of them), and its ``%%`` as ``%``, so one text serves
    both ways of running it."""

    def place(found: re.Match[str]) -> str:
        if found.group(1) is None:
            return "%"
        return f"${names.index(found.group(1)) + 1}"

    return _NAMED.sub(place, sql).encode()


class Sent:
    """A statement on its way. Raises psycopg's errors, as ``execute()`` would: at the send if
    the connection is gone or a parameter cannot be encoded, at :meth:`reply` for anything the
    server answered with an error. Interrupted while it waits (a BaseException), it closes the
    connection (:func:`closed_if_interrupted`)."""

    def __init__(self, conn: psycopg.Connection[Any], sql: bytes, params: Sequence[str | None]):
        self._conn = conn
        pgconn = conn.pgconn
        pgconn.send_query_params(sql, encoded_texts(conn, params))
        with closed_if_interrupted(conn):
            flush(pgconn)

    def reply(self) -> list[int]:
        """Wait for the statement's end; the first column of its rows, as integers."""
        pgconn = self._conn.pgconn
        results: list[pq.abc.PGresult] = []
        with closed_if_interrupted(self._conn):
            while pgconn.status == pq.ConnStatus.OK:
                result = next_result(pgconn)
                if result is None:
                    break
                results.append(result)
        deliver_notifications(pgconn)
        for result in results:
            if result.status != pq.ExecStatus.TUPLES_OK:  # the server's error (or its FATAL)
                raise psycopg.errors.error_from_result(result, encoding=self._conn.info.encoding)
        if not results or pgconn.status != pq.ConnStatus.OK:
            # Gone before the statement's end came in (its commit is at the end, so it may or
            # may not have committed); libpq answers nothing on a closed connection.
            raise psycopg.OperationalError("the connection was lost before the reply was read")
        return [int(r.get_value(i, 0) or 0) for r in results for i in range(r.ntuples)]


def placeholders(sql: str) -> list[str]:
    """The names of ``sql``'s ``%(name)s`` placeholders, each once, in the order they come."""
    return list(dict.fromkeys(m.group(1) for m in _NAMED.finditer(sql) if m.group(1)))


def encoded_texts(
    conn: psycopg.Connection[Any], params: Sequence[str | None]
) -> list[bytes | None]:
    """Text parameters in the connection's encoding, as psycopg would send them."""
    try:
        return [None if p is None else p.encode(conn.info.encoding) for p in params]
    except UnicodeEncodeError as exc:
        raise psycopg.DataError(f"a parameter cannot be sent in this encoding: {exc}") from exc


@contextlib.contextmanager
def closed_if_interrupted(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Close ``conn`` if a BaseException other than psycopg's errors (an interrupt) ends the
    block: libpq would otherwise keep the statement in progress, refusing every other."""
    try:
        yield
    except psycopg.Error:
        raise
    except BaseException:
        conn.close()
        raise


def flush(pgconn: pq.abc.PGconn) -> None:
    """Send what libpq holds for the server. flush() answers 1 while part of it waits for room
    in the socket. The server may be blocked writing to us meanwhile (notifications for this
    connection's LISTEN): what it sends is read as it comes, or neither side would move (libpq's
    advice for PQflush, as psycopg does it)."""
    while pgconn.flush():
        if _wait(pgconn.socket, select.POLLIN | select.POLLOUT) & select.POLLIN:
            pgconn.consume_input()


def next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result of what was sent, once it is in (None: the end of a statement's)."""
    while pgconn.is_busy():
        _wait(pgconn.socket, select.POLLIN)
        pgconn.consume_input()
    return pgconn.get_result()


def deliver_notifications(pgconn: pq.abc.PGconn) -> None:
    """Notifications that came in with a reply are psycopg's to deliver, as they are when they
    arrive during its own statements (a worker's wait for work takes them first)."""
    while pgconn.status == pq.ConnStatus.OK and (notified := pgconn.notifies()):
        if pgconn.notify_handler is not None:
            pgconn.notify_handler(notified)


def _wait(socket: int, events: int) -> int:
    """Block, the GIL released, until ``socket`` has one of ``events``; those it has. poll(), not
    select(): a process with more than 1,024 open files can have a socket select() cannot
    watch."""
    poll = select.poll()
    poll.register(socket, events)
    return int(poll.poll()[0][1])
