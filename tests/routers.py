"""The suite's router: only its test database, ``default``, is migrated and model-checked.

Its other aliases are a mirror of it (``other``), a pooler in front of it (``pooled``), a server
that is not there (``unreachable``), and a SQLite database no test opens (``sqlite``: there so
that tests can name a database that is not PostgreSQL). Django's model checks ask every database
a model may be migrated to about its features (SQLite runs a query for JSONField support), and
with any router configured ``makemigrations --check`` reads the migration history of every such
database: both would open these.
"""

from __future__ import annotations


class DefaultOnly:
    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        return None if db == "default" else False
