"""A project's own PostgreSQL backend (a subclass of Django's, as instrumenting and pooling
wrappers are), whose name does not end in ``.postgresql``: the checks take it for PostgreSQL."""

from __future__ import annotations

from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper


class DatabaseWrapper(PostgreSQLWrapper):
    pass
