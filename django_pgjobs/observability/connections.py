"""Connections in use on the queue's database by role, and what the server has left, for
``pgjobs status``.

Every connection django-pgjobs opens names its role in ``application_name``
(:mod:`django_pgjobs.database`): a worker's loop ``pgjobs worker <id>``, the Django connections of
a worker process (its handler threads, its signal receivers' thread, its metrics port's reads)
``pgjobs handler <id>``, a scheduler ``pgjobs scheduler`` (``pgjobs scheduler <id>`` in a worker),
a ``get_result()``/``get_event()`` waiting outside a workflow ``pgjobs wait``; with
``LISTEN_DATABASE``, the connections that LISTEN straight to PostgreSQL ``pgjobs listen ...``
(a worker's loop's, a scheduler's). Everything else
(web processes, shells, other programs) is ``other``. The counts are what PostgreSQL sees: behind
PgBouncer, server connections that its clients share, each named by the client that set its
``application_name`` last.

One read of ``pg_stat_activity``, which has a row per server process (``max_connections`` client
backends at most, plus the server's own processes): bounded by the server's size, whatever the
queue holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections

from django_pgjobs.database import (
    HANDLER_NAME,
    LISTEN_NAME,
    LOOP_NAME,
    SCHEDULER_NAME,
    WAIT_NAME,
    queue_database,
)

# Client connections only, as max_connections counts them: a session has a database and a user
# (background processes lack one or both). Another role's session shows backend_type NULL to a
# role without pg_read_all_stats, so NULL counts as a client (a hidden parallel worker, seen for
# the length of its query, would count too). The command's own connection is left out.
# Names are matched by their role's prefix and a space (the worker's id follows), or whole.
_COUNTS = """
WITH client AS (
    SELECT datname = current_database() AS here,
           CASE WHEN starts_with(application_name, %(loop)s) THEN 'loops'
                WHEN starts_with(application_name, %(handler)s) THEN 'handlers'
                WHEN application_name = %(scheduler)s
                     OR starts_with(application_name, %(scheduler)s || ' ') THEN 'schedulers'
                WHEN application_name = %(wait)s THEN 'waits'
                WHEN starts_with(application_name, %(listen)s) THEN 'listeners'
                ELSE 'other' END AS role
    FROM pg_stat_activity
    WHERE pid <> pg_backend_pid() AND datid IS NOT NULL AND usesysid IS NOT NULL
      AND coalesce(backend_type, 'client backend') = 'client backend'
)
SELECT current_database(),
       count(*) FILTER (WHERE here AND role = 'loops'),
       count(*) FILTER (WHERE here AND role = 'handlers'),
       count(*) FILTER (WHERE here AND role = 'schedulers'),
       count(*) FILTER (WHERE here AND role = 'waits'),
       count(*) FILTER (WHERE here AND role = 'listeners'),
       count(*) FILTER (WHERE here AND role = 'other'),
       count(*),
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int
           + coalesce(current_setting('reserved_connections', true)::int, 0)
FROM client
"""


@dataclass(frozen=True)
class ConnectionCounts:
    """Client connections on the queue's database by role, not counting the reader's own, and
    on the whole server (every database)."""

    database: str
    loops: int
    handlers: int
    schedulers: int
    waits: int
    listeners: int
    other: int
    # Every database's, the roles' above included.
    server: int
    max_connections: int
    # Slots only superusers (and, on PostgreSQL 16+, pg_use_reserved_connections) may take.
    reserved: int

    @property
    def left(self) -> int:
        """Connections an ordinary role can still open on the server."""
        return max(self.max_connections - self.reserved - self.server, 0)


def connection_counts(*, using: str | None = None) -> ConnectionCounts:
    """The counts on the queue's database ``using`` (default ``PGJOBS["DATABASE"]``)."""
    names = {
        "loop": f"{LOOP_NAME} ",
        "handler": f"{HANDLER_NAME} ",
        "scheduler": SCHEDULER_NAME,
        "wait": WAIT_NAME,
        "listen": f"{LISTEN_NAME} ",
    }
    with connections[queue_database(using)].cursor() as cur:
        cur.execute(_COUNTS, names)
        return ConnectionCounts(*cur.fetchone())
