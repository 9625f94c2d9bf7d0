"""The worker's own database connection, built from a Django alias's settings.

The worker keeps one autocommit psycopg connection for LISTEN and for the queue's statements:
every statement is its own transaction, so no row lock outlives the statement that took it, and
handler code (which uses Django's per-thread connections) can never join or break it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connections

# Keys Django adds for its own cursor and adapter set-up; psycopg.connect would reject or
# misapply them on a plain connection.
_DJANGO_ONLY = ("cursor_factory", "context", "server_side_binding", "pool", "assume_role")


def connection_params(alias: str) -> dict[str, Any]:
    params = dict(connections[alias].get_connection_params())
    for name in _DJANGO_ONLY:
        params.pop(name, None)
    return params


def connect(alias: str, *, application_name: str, prepare: bool = True) -> psycopg.Connection[Any]:
    """An autocommit connection for the worker.

    ``prepare=False`` turns server-side prepared statements off, for PgBouncer in transaction
    mode (the POLL_ONLY setting), where a prepared statement may land on another backend.
    """
    params = connection_params(alias)
    params["application_name"] = application_name[:63]
    conn = psycopg.connect(**params, autocommit=True)
    if not prepare:
        conn.prepare_threshold = None
    return conn
