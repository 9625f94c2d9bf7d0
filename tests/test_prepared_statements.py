"""Which of our statements are prepared on the server, and on which connections."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test import override_settings

from django_pgjobs import enqueue
from django_pgjobs.database import connect
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_connection() -> None:
    """psycopg counts runs per connection: start each test from none."""
    connection.close()
    connection.ensure_connection()


def prepared_statements() -> list[str]:
    """Statements prepared on Django's connection (this session only)."""
    with connection.cursor() as cur:
        cur.execute("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time")
        return [str(row[0]) for row in cur.fetchall()]


def test_enqueue_prepares_its_insert_from_the_sixth_run_on_a_connection() -> None:
    for n in range(5):
        enqueue("test.record", {"n": n})
    # A connection that enqueues a few times (one request) never pays for a Parse.
    assert prepared_statements() == []
    for n in range(5, 8):
        enqueue("test.record", {"n": n})
    statements = prepared_statements()
    assert len(statements) == 1
    assert statements[0].startswith("INSERT INTO pgjobs_job_queue")
    assert Job.objects.count() == 8


def test_the_connection_itself_still_prepares_nothing() -> None:
    """Django turns preparation off on its connections; only our statements are counted."""
    for n in range(8):
        enqueue("test.record", {"n": n})
        assert Job.objects.filter(payload__n=n).exists()
    assert connection.connection is not None
    assert connection.connection.prepare_threshold is None
    assert all(not s.startswith("SELECT") for s in prepared_statements())


def test_enqueue_still_works_after_a_rollback_drops_the_prepared_insert() -> None:
    """psycopg deallocates every prepared statement at a rollback; the next enqueue must not
    reach for the one that is gone."""
    for n in range(6):
        enqueue("test.record", {"n": n})
    assert prepared_statements()
    with transaction.atomic():
        enqueue("test.record", {"n": "rolled back"})
        transaction.set_rollback(True)
    assert prepared_statements() == []
    for n in range(6, 14):
        enqueue("test.record", {"n": n})
    assert Job.objects.count() == 14


def test_workflow_statements_are_prepared_the_same_way() -> None:
    """A step's checkpoint or a start is the same statement again and again (on a handler
    thread's kept connection, in a loop that starts workflows); all go through one cursor."""
    from django_pgjobs import get_workflow, start_workflow

    for n in range(6):
        start_workflow("test.greet", "ada", workflow_id=f"prepared-{n}")
    assert get_workflow("prepared-5").status == "pending"
    statements = prepared_statements()
    assert len(statements) == 1
    assert "pgjobs_workflow_executions" in statements[0]


def test_poll_only_prepares_nothing() -> None:
    """Behind PgBouncer in transaction mode a prepared statement can land on another server."""
    with override_settings(PGJOBS={"POLL_ONLY": True}):
        for n in range(8):
            enqueue("test.record", {"n": n})
    assert prepared_statements() == []
    assert Job.objects.count() == 8


def test_an_alias_that_sets_its_own_threshold_is_followed() -> None:
    assert connection.connection is not None
    connection.connection.prepare_threshold = 0
    try:
        enqueue("test.record", {"n": 1})
        assert len(prepared_statements()) == 1
        assert connection.connection.prepare_threshold == 0
    finally:
        connection.connection.prepare_threshold = None


def test_an_alias_that_turns_preparation_off_explicitly_gets_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OPTIONS["prepare_threshold"] = None is a choice, not Django's default."""
    options = {**(connection.settings_dict.get("OPTIONS") or {}), "prepare_threshold": None}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    for n in range(8):
        enqueue("test.record", {"n": n})
    assert prepared_statements() == []
    assert Job.objects.count() == 8


def test_the_workers_connection_prepares_nothing() -> None:
    """Its batch statements would get generic plans blind to the array sizes (see connect())."""
    conn = connect("default", application_name="pgjobs test")
    try:
        assert conn.prepare_threshold is None
    finally:
        conn.close()


@pytest.mark.parametrize("reset", ["DISCARD ALL", "DEALLOCATE ALL"])
def test_a_reset_through_djangos_cursor_does_not_break_enqueue(reset: str) -> None:
    """psycopg only notices a reset on statements it counts; ours must notice theirs."""
    for n in range(6):
        enqueue("test.record", {"n": n})
    with connection.cursor() as cur:
        cur.execute(reset)
    for n in range(6, 9):
        enqueue("test.record", {"n": n})
    assert Job.objects.count() == 9


def test_a_reset_noticed_inside_a_failed_savepoint_is_repaired_after_it() -> None:
    from django.db import DatabaseError

    for n in range(6):
        enqueue("test.record", {"n": n})
    with connection.cursor() as cur:
        cur.execute("DISCARD ALL")
    with transaction.atomic():
        with pytest.raises(DatabaseError), transaction.atomic():
            enqueue("test.record", {"n": "lost with its savepoint"})
        enqueue("test.record", {"n": "after the savepoint"})
    assert Job.objects.filter(payload__n="after the savepoint").exists()
    assert Job.objects.count() == 7


def test_a_column_type_changed_under_a_prepared_statement_is_replanned() -> None:
    """A migration that changes a column a prepared statement returns makes PostgreSQL refuse
    it ("cached plan must not change result type") until it is prepared again."""
    from django_pgjobs.prepared import statement_cursor

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE pgjobs_test_prepared (label varchar(10))")
        cur.execute("INSERT INTO pgjobs_test_prepared VALUES ('a')")
    try:
        for _ in range(6):
            with statement_cursor("default") as cur:
                cur.execute("SELECT label FROM pgjobs_test_prepared")
        assert len(prepared_statements()) == 1
        with connection.cursor() as cur:
            cur.execute("ALTER TABLE pgjobs_test_prepared ALTER COLUMN label TYPE varchar(20)")
        with statement_cursor("default") as cur:
            cur.execute("SELECT label FROM pgjobs_test_prepared")
            assert cur.fetchall() == [("a",)]
    finally:
        with connection.cursor() as cur:
            cur.execute("DROP TABLE pgjobs_test_prepared")
