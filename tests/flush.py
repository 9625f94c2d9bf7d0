"""The database flush after each transactional test: only the tables the test wrote to.

Django's ``flush`` (TransactionTestCase's teardown) truncates every table, about 6 ms a table
here (21 of them: 0.12 s), then sends ``post_migrate``, whose handlers create the content types
and permissions it has just truncated again (0.07 s more). That was 0.2 s of each of some 2,000
transactional tests, where the test itself took 0.05 s: about a quarter of a CI leg.

Instead the teardown truncates the tables that have been written to since they were last
truncated (a table's main file is empty until a row is written, and stays so until it is
truncated again), keeps the content types and permissions (made by ``migrate`` for the test
database, which no test changes), and sends no signal. The same rows are left as by Django's
flush: none, but in those two tables.
"""

from __future__ import annotations

from django.db import connections, transaction
from django.test import TransactionTestCase

# Made by migrate's post_migrate handlers; Django's flush truncates and remakes them.
KEPT = frozenset({"django_content_type", "auth_permission"})

_WRITTEN = """
SELECT t FROM unnest(%s::text[]) AS t
WHERE pg_relation_size(to_regclass(quote_ident(t))) > 0
"""


def flush_written(using: str) -> None:
    """Truncate the tables of database ``using`` that hold rows, or did since their last
    truncate (CASCADE: with those that refer to them, as a full flush would have)."""
    connection = connections[using]
    tables = [
        name
        for name in connection.introspection.django_table_names(
            only_existing=True, include_views=False
        )
        if name not in KEPT
    ]
    with transaction.atomic(using=using), connection.cursor() as cur:
        cur.execute(_WRITTEN, [tables])
        written = [row[0] for row in cur.fetchall()]
        if written:
            quoted = ", ".join(connection.ops.quote_name(name) for name in written)
            cur.execute(f"TRUNCATE {quoted} CASCADE")


def _fixture_teardown(self: TransactionTestCase) -> None:
    for using in self._databases_names(include_mirrors=False):  # type: ignore[attr-defined]
        flush_written(using)


def install() -> None:
    """Make every TransactionTestCase (pytest-django's ``transactional_db``) flush so."""
    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[attr-defined]
