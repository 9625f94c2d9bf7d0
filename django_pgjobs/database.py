"""Our connections to PostgreSQL: the worker's own, and a cursor for our statements on Django's.

**The worker's own connection** (:func:`connect`): one autocommit psycopg connection for LISTEN
and for the queue's statements. Every statement is its own transaction, so no row lock outlives
the statement that took it, and handler code (which uses Django's per-thread connections) can
never join or break it.

**What each connection says it is**: ``application_name`` in ``pg_stat_activity`` names the
role of every connection we open (the names below), and ``pgjobs status`` counts connections by
them (:mod:`django_pgjobs.observability.connections`). Ours carry it as a connection parameter;
the Django connections of a worker or scheduler process get it from libpq's ``PGAPPNAME``
(:func:`name_process_connections`), so an ``application_name`` the project sets wins.

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

A prepared statement the server lost (a ``DISCARD ALL`` through Django's cursor) or can no longer
run (a migration changed a column it returns) is forgotten, and the statement run again when no
transaction is open (the server refused it before running it); inside one, the caller's
transaction fails once and the next statement after its rollback starts afresh.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import errors
from psycopg.pq import TransactionStatus

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import PgJobsError

# Keys Django adds for its own cursor and adapter set-up; psycopg.connect would reject or
# misapply them on a plain connection.
_DJANGO_ONLY = ("cursor_factory", "context", "server_side_binding", "pool", "assume_role")


# The application_name of each role, a prefix to which a worker's id is added (the worker's loop,
# its handler threads' Django connections, the scheduler thread of a worker), or whole (a
# pgjobs_scheduler process, a get_result()/get_event() waiting outside a workflow).
LOOP_NAME = "pgjobs worker"
HANDLER_NAME = "pgjobs handler"
SCHEDULER_NAME = "pgjobs scheduler"
WAIT_NAME = "pgjobs wait"
# With LISTEN_DATABASE, the connections that LISTEN straight to PostgreSQL: a worker's loop's
# (the worker's id follows), a scheduler's ("scheduler", and a worker's id if in one).
LISTEN_NAME = "pgjobs listen"
# pg_stat_activity shows this much of an application_name (NAMEDATALEN - 1 bytes); the role's
# prefix always fits, so a long worker id never hides what a connection is.
_NAME_LENGTH = 63


def connection_params(alias: str) -> dict[str, Any]:
    params = dict(connections[alias].get_connection_params())
    for name in _DJANGO_ONLY:
        params.pop(name, None)
    return params


def connect(
    alias: str, *, application_name: str, connect_timeout: int | None = None
) -> psycopg.Connection[Any]:
    """An autocommit connection for the worker, the scheduler or an outside wait.

    Its statements are not prepared on the server (Django's default too), but for those run
    through :func:`preparing_cursor`. The hot ones work on batches given as arrays, and a
    prepared statement's generic plan, made without the array sizes, can choose a nested loop
    over them: measured, the completion of 500 jobs went from 14 ms to 50 ms and draining
    20,000 jobs 40% slower. Parsing a batch statement costs little next to the hundreds of jobs
    it handles.

    ``connect_timeout`` (whole seconds; libpq counts no less than 2) bounds the connect, for
    each address the host resolves to, unless the alias's ``OPTIONS`` set a smaller one.
    Without either, psycopg waits 130 s for a server that accepted the connection and never
    answers.
    """
    params = connection_params(alias)
    params["application_name"] = application_name[:_NAME_LENGTH]
    params["prepare_threshold"] = None
    if connect_timeout is not None:
        params["connect_timeout"] = _at_most(params.get("connect_timeout"), connect_timeout)
    return psycopg.connect(**params, autocommit=True)


def _at_most(own: Any, limit: int) -> int:
    """The alias's own connect_timeout if it is a smaller limit than ``limit``: a value that
    is not a positive number (libpq's 0, "no limit") never lengthens the wait."""
    try:
        seconds = int(float(own))
    except (TypeError, ValueError):
        return limit
    return seconds if 0 < seconds < limit else limit


@contextmanager
def process_connections_named(name: str) -> Iterator[None]:
    """Meanwhile, every connection this process opens without naming itself is named ``name``:
    Django's (a worker's handler threads, its signal receivers' thread, its metrics port's
    reads, its ``--pool process`` children) and any a handler opens with libpq.

    Through libpq's ``PGAPPNAME``, which a connection uses only when nothing else names it: an
    ``application_name`` in ``DATABASES[...]["OPTIONS"]`` or a service file wins, and so does a
    ``PGAPPNAME`` the environment already has. It costs no round trip, where a ``SET`` on each
    new connection would cost one, and leaves ``DATABASES`` as the project's code reads it. It
    names the whole process, so only the commands that run a worker or a scheduler use it, before
    their threads start; the name goes at the end, for a caller that goes on (``call_command``).
    """
    ours = "PGAPPNAME" not in os.environ
    if ours:
        os.environ["PGAPPNAME"] = name[:_NAME_LENGTH]
    try:
        yield
    finally:
        if ours:
            os.environ.pop("PGAPPNAME", None)


def through_pooler(conn: psycopg.Connection[Any]) -> bool:
    """Does ``conn`` reach PostgreSQL through a connection pooler? A pooler (PgBouncer, pgcat,
    Odyssey) answers the client's login with a cancel key of its own, so the backend pid the
    client was told is not the pid of the server session running its statements. One round
    trip, never prepared; inside a caller's transaction it is one more read there."""
    row = conn.execute("SELECT pg_backend_pid()", prepare=False).fetchone()
    return row is None or row[0] != conn.info.backend_pid


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
        conn = self.connection
        if conn.prepare_threshold is not None or not _may_prepare(conn):
            return super().execute(query, params, **kwargs)
        conn.prepare_threshold = _PREPARE_FROM_RUN
        try:
            if conn in _stale:
                self._forget_prepared()
            try:
                return super().execute(query, params, **kwargs)
            except (errors.InvalidSqlStatementName, errors.FeatureNotSupported) as exc:
                if not _lost_prepared_statement(exc):
                    raise
                # Nothing ran: the server refused the statement before executing it.
                self._forget_prepared()
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    raise  # the caller's transaction failed; its rollback is theirs to do
                return super().execute(query, params, **kwargs)
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
    if conn not in _direct and conn.info.transaction_status == TransactionStatus.IDLE:
        _direct[conn] = not through_pooler(conn)
        _runs.pop(conn, None)
    return _PreparingCursor(conn)


def run_generic(cur: Any, query: Any, params: Any) -> None:
    """Run ``query`` through a :func:`preparing_cursor` planned once for all parameters: once
    psycopg has prepared it, the server keeps one plan made without the values (its generic
    plan), where by its own choice it would plan it again at every run. For a statement that
    costs more to plan than to run and whose plan does not depend on the values (tested for
    each one passed here: queries.claim's flow-controlled claim, 4.4 ms of planning a claim).

    Only while it runs, only where statements are prepared (never behind a pooler, where the
    setting would stay with a server connection other clients share): the batch statements
    that follow on the same connection are planned for their values (the unnamed statement of
    psycopg's protocol is planned generically too under the setting, and a batch of 500
    completions then took 38 ms instead of 6). JIT compilation is switched off for the session
    first: a generic plan's estimates are large, and compiling its expressions took 270 ms of a
    15 ms claim."""
    conn = cur.connection
    if not isinstance(cur, _PreparingCursor) or _direct.get(conn) is not True:
        cur.execute(query, params)
        return
    conn.execute(
        "SELECT set_config('jit', 'off', false), "
        "set_config('plan_cache_mode', 'force_generic_plan', false)",
        prepare=False,
    )
    try:
        # Prepared at once, not from its sixth run: the connection is known to be direct, and
        # this statement is run over and over.
        cur.execute(query, params, prepare=True)
    finally:
        if not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.execute("RESET plan_cache_mode", prepare=False)


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


def command_database(option: str | None) -> str:
    """The alias a command's ``--database`` names (default ``PGJOBS["DATABASE"]``), checked: it
    is configured, and ``migrate`` created our tables there. Otherwise a clear error, instead of
    a traceback or a worker retrying a missing table for ever."""
    if option is not None and option not in settings.DATABASES:
        raise PgJobsError(f"--database {option!r} is not in settings.DATABASES.")
    alias = option or conf.DATABASE
    with connections[alias].cursor() as cur:
        cur.execute("SELECT to_regclass('pgjobs_job_queue') IS NOT NULL")
        found = cur.fetchone()[0]
    if not found:
        raise PgJobsError(
            f"The django-pgjobs tables are not in database {alias!r}: run "
            f"`python manage.py migrate{'' if alias == 'default' else f' --database {alias}'}`."
        )
    return alias


def unapplied_migrations(alias: str) -> list[str]:
    """The django-pgjobs migrations ``migrate`` has not applied on ``alias``, oldest first
    (all of them when the database has none). A worker or scheduler on such a database would
    fail every statement that meets a missing table or column, so the commands refuse to start
    and the check ``pgjobs.W001`` says so."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    applied = loader.applied_migrations or {}
    ours = [node for node in loader.graph.nodes if node[0] == "pgjobs"]
    return sorted(name for app, name in ours if (app, name) not in applied)


def require_migrated(alias: str) -> None:
    """Raise a clear error, naming the command that fixes it, unless every django-pgjobs
    migration is applied on ``alias``."""
    missing = unapplied_migrations(alias)
    if missing:
        raise PgJobsError(
            f"Database {alias!r} has {len(missing)} unapplied django-pgjobs migration(s) "
            f"({', '.join(missing)}): run `python manage.py migrate"
            f"{'' if alias == 'default' else f' --database {alias}'}`."
        )


# SQLSTATEs that say the session is gone, not that the statement was wrong: class 08
# (connection exception) and the server ending the session (57P01 admin shutdown, which
# pg_terminate_backend and a fast restart send; 57P02 crash shutdown; 57P03 cannot connect now).
_SESSION_ENDED = ("57P01", "57P02", "57P03")


def connection_lost(exc: BaseException) -> bool:
    """Did ``exc``, or the error that caused it, come from losing a database connection (a
    restart, a network cut, ``pg_terminate_backend``) rather than from a statement itself?

    Django wraps the driver's errors (the driver's is the ``__cause__``); a client-side error
    without an SQLSTATE ("server closed the connection unexpectedly", "the connection is
    closed") is a lost connection too.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.Error):
            state = current.sqlstate
            if state is None:
                return isinstance(current, psycopg.OperationalError | psycopg.InterfaceError)
            return state.startswith("08") or state in _SESSION_ENDED
        current = current.__cause__ or current.__context__
    return False


def in_callers_transaction(alias: str) -> bool:
    """Is code on ``alias`` running inside a ``transaction.atomic()`` block of its caller's?

    Blocks a test opened around the code under test do not count: Django's ``TestCase`` marks
    its own (``_from_testcase``: Django lets ``atomic(durable=True)`` run inside them for the
    same reason) and :func:`django_pgjobs.testing.drain` marks the savepoint of each attempt.
    Code inside only those runs as it would at the top level of a worker, in autocommit.
    """
    conn = connections[alias]
    return conn.in_atomic_block and not all(
        getattr(block, "_from_testcase", False) for block in conn.atomic_blocks
    )
