"""Our connections to PostgreSQL: the worker's own, and the facts about Django's we act on.

**The worker's own connection** (:func:`connect`): one autocommit psycopg connection for LISTEN
and for the queue's statements. Every statement is its own transaction, so no row lock outlives
the statement that took it, and handler code (which uses Django's per-thread connections) can
never join or break it.

**What each connection says it is**: ``application_name`` in ``pg_stat_activity`` names the
role of every connection we open (the names below), and ``pgjobs status`` counts connections by
them (:mod:`django_pgjobs.observability.connections`). Ours carry it as a connection parameter;
the Django connections of a worker or scheduler process get it from libpq's ``PGAPPNAME``
(:func:`name_process_connections`), so an ``application_name`` the project sets wins.

**Prepared statements**, on Django's connection and ours: :mod:`django_pgjobs.prepared`.
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

from django_pgjobs.conf import conf
from django_pgjobs.exceptions import InvalidJobError, PgJobsError

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


def queue_database(using: str | None = None) -> str:
    """The alias the queue's statements run on: ``using``, else ``PGJOBS["DATABASE"]``, refused
    with InvalidJobError, naming it and its vendor, unless it is PostgreSQL.

    Every entry point that takes ``using=`` (and each that defaults to the setting) asks here
    first, so an alias of a project's other database gets this error, before anything is
    written, instead of the driver's (``'sqlite3.Connection' object has no attribute 'pgconn'``)
    or a syntax error from our SQL. No round trip: the vendor is the backend's class attribute.
    """
    alias = using or conf.DATABASE
    connection = connections[alias]
    if connection.vendor == "postgresql":
        return alias
    what = f"{connection.display_name} ({connection.settings_dict.get('ENGINE')}), not PostgreSQL"
    if using:
        raise InvalidJobError(
            f"Database {alias!r} is {what}: django-pgjobs' queue lives in PostgreSQL only. Name "
            f"the queue's alias (PGJOBS['DATABASE'] is {conf.DATABASE!r}), or leave it out."
        )
    raise InvalidJobError(
        f"PGJOBS['DATABASE'] is {alias!r}, which is {what}: django-pgjobs' queue lives in "
        "PostgreSQL only. Set it to the alias of a PostgreSQL database (system check pgjobs.E001)."
    )


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
    through :func:`~django_pgjobs.prepared.preparing_cursor`. The hot ones work on batches given
    as arrays, and a prepared statement's generic plan, made without the array sizes, can choose
    a nested loop over them: measured, the completion of 500 jobs went from 14 ms to 50 ms and
    draining 20,000 jobs 40% slower. Parsing a batch statement costs little next to the hundreds
    of jobs it handles.

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
    conn = psycopg.connect(**params, autocommit=True)
    _own.add(conn)
    return conn


# The connections connect() made: ours for as long as they live, never an application's.
_own: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def is_own(conn: psycopg.Connection[Any]) -> bool:
    """Did :func:`connect` make ``conn`` (not Django, for an application or a test)?"""
    return conn in _own


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


def command_database(option: str | None) -> str:
    """The alias a command's ``--database`` names (default ``PGJOBS["DATABASE"]``), checked: it
    is configured, and ``migrate`` created our tables there. Otherwise a clear error, instead of
    a traceback or a worker retrying a missing table for ever."""
    if option is not None and option not in settings.DATABASES:
        raise PgJobsError(f"--database {option!r} is not in settings.DATABASES.")
    alias = queue_database(option)
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


def opens_own_transaction(alias: str) -> bool:
    """Does ``transaction.atomic(using=alias)`` begin a transaction of its own now, not a
    savepoint inside a caller's ``atomic()`` block or inside a transaction the caller began by
    turning autocommit off? Only in its own may a reader set the isolation level, or settings
    that end with the transaction (``SET LOCAL``)."""
    conn = connections[alias]
    return not conn.in_atomic_block and conn.get_autocommit()


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
