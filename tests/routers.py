"""The suite's router: nothing is migrated to, or checked against, its "sqlite" alias.

That alias is there only so that tests can name a database that is not PostgreSQL (a project's
own default beside a queue of its own); no test creates or opens it. Django's model checks ask
every database a model may be migrated to about its features (SQLite runs a query to tell
whether it supports JSONField), so the checks the suite runs would open it.
"""

from __future__ import annotations


class NothingOnSqlite:
    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        return False if db == "sqlite" else None
