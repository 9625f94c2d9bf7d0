"""A handler thread's Django connections, kept from one job to the next.

Django's ``close_old_connections()`` treats the default ``CONN_MAX_AGE = 0`` as "close after every
request"; a worker's request is a job, and reconnecting for each one costs more than a short job
(a workflow job always uses the database). So a handler thread keeps its connections, at most
``concurrency`` per database for a worker, closed when the worker stops. Session state a handler
sets (``SET``, session advisory locks) stays with the connection, as it does in a web process with
persistent connections.

What a kept connection must never carry into the next job is checked twice:

- :func:`after_job` closes a connection left in a transaction (a raw ``BEGIN``) or broken, or
  older than a positive ``CONN_MAX_AGE``. A connection to another of the project's databases
  that is not PostgreSQL is treated as Django treats it after a request.
- :func:`before_job` catches what happened while the thread waited: a connection past its age
  is closed, and one the server spoke on while it sat idle (the goodbye of a restart,
  ``idle_session_timeout`` or ``pg_terminate_backend``) is health-checked with Django's
  ``SELECT 1`` before the job's first query, so it costs a reconnect, not a failed attempt.
  Looking costs a ``poll()`` of the socket, no round trip; a connection nobody wrote to is
  used as it is (or checked anyway, if the alias sets ``CONN_HEALTH_CHECKS``).

Neither applies on a thread whose connections belong to its caller (:func:`owned_by_caller`).
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db.backends.signals import connection_created


class _ThreadConnections(threading.local):
    """Per handler thread, by alias: ``kept``, the connections its last job left open, and
    ``opened``, those made since (Django's connection_created signal runs in the thread that
    connects; a thread has one wrapper per alias, so neither grows). Between them they are
    every connection the thread has, without walking connections.all(), which costs more than
    a no-op job. Every attribute has its value from the thread's first look: a ``getattr`` with
    a default that finds none raises and catches an AttributeError inside, 2 us each, four a
    job."""

    caller_owned = False

    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}
        self.opened: dict[str, Any] = {}


_local = _ThreadConnections()


def _opened(sender: Any, connection: Any, **kwargs: Any) -> None:
    _local.opened[connection.alias] = connection


connection_created.connect(_opened, dispatch_uid="django_pgjobs.worker.handler_connections")


@contextmanager
def owned_by_caller() -> Iterator[None]:
    """Attempts run meanwhile on this thread use connections its caller owns: a test's own
    thread and connection, inside the test's transaction (``django_pgjobs.testing.drain``).
    :func:`before_job` and :func:`after_job` leave them alone: closing a connection left in a
    transaction would end the test's."""
    previous = _local.caller_owned
    _local.caller_owned = True
    try:
        yield
    finally:
        _local.caller_owned = previous


def after_job() -> None:
    """Close what must not be kept (see the module docstring); remember the rest."""
    if _local.caller_owned:
        return
    if not (_local.kept or _local.opened):
        return  # the thread holds no connection (none made, or all closed already)
    candidates = {**_local.kept, **_local.opened}
    # Until the loop below finishes, every candidate stays on the list, so a failure halfway
    # (a pool's putconn raising in close(), say) leaves them all to be checked next time.
    _local.kept, _local.opened = candidates, {}
    kept: dict[str, Any] = {}
    for alias, conn in candidates.items():
        raw = conn.connection
        if raw is None:
            continue
        if conn.vendor != "postgresql":
            # Another of the project's databases (a SQLite default beside the queue's own): no
            # psycopg to ask, so Django's own per-request rule, CONN_MAX_AGE as it is set.
            conn.close_if_unusable_or_obsolete()
            if conn.connection is not None:
                kept[alias] = conn
            continue
        if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            # A handler left a transaction open (a raw BEGIN) or broken: never carry it, or
            # its locks, into the next job.
            conn.close()
            continue
        if conn.settings_dict.get("CONN_MAX_AGE") == 0:
            conn.close_at = None  # the age check is for a positive CONN_MAX_AGE only
        # (Also re-arms Django's per-request health check when CONN_HEALTH_CHECKS is set.)
        conn.close_if_unusable_or_obsolete()
        if conn.connection is not None:
            kept[alias] = conn
    _local.kept = kept


def before_job() -> None:
    """Close a kept connection that aged out while the thread waited; have one the server
    spoke on health-checked by Django before the job's first query."""
    if _local.caller_owned:
        return
    for conn in _local.kept.values():
        raw = conn.connection
        if raw is None or (conn.vendor == "postgresql" and raw.closed):
            continue
        if conn.close_at is not None and time.monotonic() >= conn.close_at:
            conn.close()
        elif conn.vendor != "postgresql":
            continue  # not a socket psycopg reads: nothing to look at
        elif _server_spoke(raw):
            conn.health_check_enabled = True
            conn.health_check_done = False
        else:
            conn.health_check_enabled = conn.settings_dict.get("CONN_HEALTH_CHECKS", False)


def _server_spoke(raw: psycopg.Connection[Any]) -> bool:
    """Has anything arrived on this idle connection: a goodbye, EOF, or a notification?"""
    poller = select.poll()
    poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
