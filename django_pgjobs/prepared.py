"""Prepared statements: which of our statements psycopg may prepare, and on which connections.

**Our statements on Django's connection** (:func:`statement_cursor`: enqueue and workflows), so
they join the caller's transaction. Django binds parameters on the client and never prepares:
every statement is sent as new text and parsed and planned again. For the statements an
application runs over and over (enqueue's INSERT above all) that parse and plan is a large part
of the cost: measured on PostgreSQL 15, the INSERT takes 270 us unprepared and 190 us prepared.
:func:`statement_cursor` binds on the server and lets psycopg prepare a statement from its sixth
run on a connection, so

- a connection that enqueues once and goes away (Django's default ``CONN_MAX_AGE = 0``) never
  pays the extra Parse round trip a prepared statement needs at first;
- a long-lived one (a pool, ``CONN_MAX_AGE``, a worker's handler thread, a script) parses and
  plans the statement once.

Only our statements are counted and prepared: the connection's own setting (None, Django's
default) is back in place before the cursor is handed out again. If the alias sets
``OPTIONS["prepare_threshold"]`` itself, psycopg follows that, ``None`` included (nothing is
prepared). With ``POLL_ONLY`` Django's plain cursor is used.

Behind a transaction pooler (PgBouncer in transaction mode) nothing of ours is prepared: a
statement prepared through one server connection is run, a transaction later, on another, which
fails (``prepared statement "_pg3_0" does not exist``) or, worse, runs the statement another
client prepared under that name there. Measured through PgBouncer 1.18, 84 of 800 enqueues failed
so. Before a connection's first statement could be prepared (the run after our fifth on it)
:func:`through_pooler` asks, once, whether it reaches PostgreSQL directly.

**On the worker's own connection** (:func:`preparing_cursor`): its claims, asked at once whether
the connection is direct; the flow-controlled one runs on its generic plan (:func:`run_generic`).
The statements that carry batches (completions) are never prepared
(:func:`django_pgjobs.database.connect` says why).

A prepared statement the server lost (a ``DISCARD ALL`` through Django's cursor) or can no longer
run (a migration changed a column it returns) is forgotten, and the statement run again when no
transaction is open (the server refused it before running it); inside one, the caller's
transaction fails once and the next statement after its rollback starts afresh.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from django.db import connections
from psycopg import errors
from psycopg.pq import TransactionStatus

from django_pgjobs.conf import conf
from django_pgjobs.database import is_own, through_pooler

T = TypeVar("T")

# psycopg's own default threshold (see the module docstring): it prepares a statement at its
# sixth run, so before a connection's sixth statement of ours nothing of ours is prepared.
_PREPARE_FROM_RUN = 5

# Per connection, our statements run on it until the first that could be prepared, then the
# verdict of through_pooler() (True: it is direct, ours may be prepared).
_runs: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()
_direct: weakref.WeakKeyDictionary[psycopg.Connection[Any], bool] = weakref.WeakKeyDictionary()

# Connections whose prepared statements may be gone from the server while psycopg still lists
# them, noted while a failed transaction made it impossible to say so (see _forget_prepared).
_stale: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


class _PreparingCursor(psycopg.Cursor[Any]):
    """A server-binding cursor whose statements count towards preparation while the
    connection otherwise prepares nothing."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if self.connection.prepare_threshold is not None or not _may_prepare(self.connection):
            return super().execute(query, params, **kwargs)
        return self._preparing(
            lambda: super(_PreparingCursor, self).execute(query, params, **kwargs)
        )

    def _preparing(self, run: Callable[[], T]) -> T:
        """``run`` (this cursor's statement) with psycopg counting it towards preparation; a
        prepared statement the server lost is forgotten, and run again if no transaction was
        open (the server refused it before running it)."""
        conn = self.connection
        conn.prepare_threshold = _PREPARE_FROM_RUN
        try:
            if conn in _stale:
                self._forget_prepared()
            try:
                return run()
            except (errors.InvalidSqlStatementName, errors.FeatureNotSupported) as exc:
                if not _lost_prepared_statement(exc):
                    raise
                self._forget_prepared()
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    raise  # the caller's transaction failed; its rollback is theirs to do
                return run()
        finally:
            conn.prepare_threshold = None

    def _forget_prepared(self) -> None:
        """Make psycopg drop the prepared statements it thinks the server has.

        psycopg notices DISCARD ALL, DEALLOCATE ALL or DDL only on statements it counts, and
        with Django's threshold (None) it counts none of the application's: after a
        ``DISCARD ALL`` through Django's cursor, or a migration that changed a column a prepared
        statement returns, every later run of ours would fail. A ``DEALLOCATE ALL`` run here,
        where psycopg counts it, clears both sides; in a failed transaction it must wait for the
        next statement after the rollback.
        """
        conn = self.connection
        if conn.info.transaction_status == TransactionStatus.INERROR:
            _stale.add(conn)
            return
        super().execute("DEALLOCATE ALL")
        _stale.discard(conn)


def preparing_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """A cursor on one of our own connections (:func:`connect`) whose statements psycopg
    prepares from their sixth run, as :func:`statement_cursor`'s are, and never behind a
    pooler: for a statement with no batch in it that a worker runs over and over. An idle
    worker's claim (queries.claim_jobs) spent 1.1 ms of its 1.8 ms round trip being parsed and
    planned again. A statement run through it with ``prepare=False`` is never prepared.

    Our own connections live as long as their worker: whether one reaches PostgreSQL directly is
    asked at once (one round trip), not at its sixth statement, so a statement run with
    :func:`run_generic` is prepared from its first run."""
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    if is_own(conn) and conn not in _direct and idle:
        _direct[conn] = not through_pooler(conn)
        _runs.pop(conn, None)
    return _PreparingCursor(conn)


# The settings of a statement run on its generic plan (run_generic), for its own transaction.
_GENERIC = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), "
    "set_config('jit', 'off', true)"
)


def run_generic(cur: Any, query: Any, params: Any) -> None:
    """Run ``query`` through a :func:`preparing_cursor` prepared and planned once for all
    parameters (its generic plan), where PostgreSQL by its own choice would plan it again at
    every run. For a statement that costs more to plan than to run and whose plan does not
    depend on the values (tested for each one passed here: queries.claim's flow-controlled
    claim, 4.4 ms of planning a claim). Its results are read from ``cur`` as after execute().

    Only on one of our own connections (:func:`~django_pgjobs.database.connect`), idle, in
    autocommit and direct (never behind a pooler, where nothing is prepared); anywhere else
    (Django's connection in ``testing.drain``) it is run as it is. The settings that make it so
    are set for the statement's own transaction: ``SET LOCAL``, sent with the statement in one
    pipeline, so they end with it, failed or not, and cost no round trip. Session-wide, the
    batch statements after it (unnamed statements of the protocol, planned generically too)
    were slow: a completion of 500 took 38 ms instead of 6. JIT is off for it: a generic plan's
    estimates are large, and compiling its expressions took 270 ms of a 15 ms claim.
    """
    conn = cur.connection
    if not (
        isinstance(cur, _PreparingCursor)
        and is_own(conn)
        and conn.autocommit
        and conn.info.transaction_status == TransactionStatus.IDLE
        and _direct.get(conn) is True
    ):
        cur.execute(query, params)
        return
    # A failed pipeline ends its implicit transaction: a lost statement is run again.
    cur._preparing(lambda: _generic_pipeline(cur, query, params))


def _generic_pipeline(cur: _PreparingCursor, query: Any, params: Any) -> None:
    """The settings and the statement, prepared at once (this connection is known to be direct,
    and the statement runs over and over), in one implicit transaction ending at the Sync."""
    conn = cur.connection
    with conn.pipeline():
        conn.execute(_GENERIC, prepare=False)
        psycopg.Cursor.execute(cur, query, params, prepare=True)


def _may_prepare(conn: psycopg.Connection[Any]) -> bool:
    """May psycopg prepare our statements on ``conn``? Asked of the server once, at our sixth
    statement on it: a connection used for a few (Django's default ``CONN_MAX_AGE = 0``) never
    pays the round trip."""
    verdict = _direct.get(conn)
    if verdict is not None:
        return verdict
    runs = _runs.get(conn, 0)
    if runs < _PREPARE_FROM_RUN:
        _runs[conn] = runs + 1
        return True
    if conn.info.transaction_status == TransactionStatus.INERROR:
        return False  # cannot ask now; this statement fails anyway, and the next one asks
    _direct[conn] = verdict = not through_pooler(conn)
    _runs.pop(conn, None)
    return verdict


def _lost_prepared_statement(exc: psycopg.Error) -> bool:
    if isinstance(exc, errors.InvalidSqlStatementName):
        return True
    # A prepared statement whose result columns changed type under it.
    return "cached plan must not change result type" in str(exc)


@contextmanager
def statement_cursor(using: str) -> Iterator[Any]:
    """A cursor on Django's connection ``using`` for our own statements (see the module
    docstring), wrapped as Django wraps its cursors so query logging, ``assertNumQueries`` and
    ``execute_wrapper()`` instrumentation (APM agents) still see every statement."""
    connection = connections[using]
    if conf.POLL_ONLY:
        with connection.cursor() as cur:
            yield cur
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    options = connection.settings_dict.get("OPTIONS") or {}
    # An explicit prepare_threshold, even None, is the alias's choice to make.
    server_side = (psycopg.Cursor if "prepare_threshold" in options else _PreparingCursor)(raw)
    # (django-stubs types the argument as Django's wrapper; Django passes the driver's cursor.)
    wrapped = (
        connection.make_debug_cursor(server_side)  # type: ignore[arg-type]
        if connection.queries_logged
        else connection.make_cursor(server_side)  # type: ignore[arg-type]
    )
    connection.validate_thread_sharing()
    with wrapped as cur:
        yield cur
