from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from django_pgjobs import enqueue, get_job


@pytest.mark.django_db
def test_models_and_migrations_agree() -> None:
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_migrate_to_zero_and_back() -> None:
    call_command("migrate", "pgjobs", "zero", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('pgjobs_job_queue'), to_regproc('pgjobs_enqueue')")
        assert cur.fetchone() == (None, None)
    call_command("migrate", "pgjobs", verbosity=0)
    # Tables, defaults, trigger and SQL function are all back.
    assert get_job(enqueue("test.record")).status == "pending"
    with connection.cursor() as cur:
        cur.execute("SELECT pgjobs_enqueue('test.record')")
        assert cur.fetchone()[0] is not None


SIGNATURE = "pgjobs_enqueue(text, jsonb, text, integer, timestamptz, integer, text)"


@pytest.fixture
def at_0008(transactional_db: None) -> Iterator[None]:
    """The database as it was before 0009; migrated back to the latest afterwards."""
    call_command("migrate", "pgjobs", "0008", verbosity=0)
    yield
    call_command("migrate", "pgjobs", verbosity=0)


def test_0009_keeps_the_privileges_an_operator_set_on_pgjobs_enqueue(at_0008: None) -> None:
    with connection.cursor() as cur:
        cur.execute(f"REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM PUBLIC")
        cur.execute("SELECT proacl::text FROM pg_proc WHERE proname = 'pgjobs_enqueue'")
        before = cur.fetchone()[0]
    assert before is not None  # PUBLIC may no longer call it
    call_command("migrate", "pgjobs", "0009", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT proacl::text FROM pg_proc WHERE proname = 'pgjobs_enqueue'")
        after = cur.fetchone()[0]
    # DROP FUNCTION + CREATE FUNCTION resets the ACL to the default (EXECUTE to PUBLIC).
    assert after == before


def test_0009_applies_when_an_sql_function_calls_pgjobs_enqueue(at_0008: None) -> None:
    """docs/howto/sql.md invites calling pgjobs_enqueue() from SQL functions; a SQL-standard
    body (PG 14+) records a dependency on it, so DROP FUNCTION refuses."""
    with connection.cursor() as cur:
        cur.execute(
            "CREATE FUNCTION review_enqueue_report() RETURNS uuid LANGUAGE sql "
            "BEGIN ATOMIC SELECT pgjobs_enqueue('test.record'); END"
        )
    try:
        call_command("migrate", "pgjobs", "0009", verbosity=0)
    finally:
        with connection.cursor() as cur:
            cur.execute("DROP FUNCTION IF EXISTS review_enqueue_report()")
