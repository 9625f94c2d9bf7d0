from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

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


@pytest.fixture
def before_reserved_names(transactional_db: None) -> Iterator[None]:
    """The database before 0012 (reserved names and keys); migrated back to the latest after."""
    call_command("migrate", "pgjobs", "0011", verbosity=0)
    yield
    with connection.cursor() as cur:
        cur.execute("DELETE FROM pgjobs_schedules WHERE job_name LIKE 'pgjobs.%%'")
    call_command("migrate", "pgjobs", verbosity=0)


def _keys() -> dict[str, str | None]:
    with connection.cursor() as cur:
        cur.execute("SELECT payload ->> 'label', key FROM pgjobs_job_queue")
        return dict(cur.fetchall())


def test_0012_moves_the_library_keys_into_the_reserved_space_and_back(
    before_reserved_names: None,
) -> None:
    rows = [
        ("workflow job", "pgjobs.workflow:v1", {"workflow_id": "w1"}, "workflow:w1"),
        ("tick", "test.record", {}, "cron:report:2026-01-01T00:00:00+00:00"),
        # A user's keys that merely look like ours keep them.
        ("user workflow-like", "test.record", {"workflow_id": "w1"}, "workflow:w1"),
        ("user cron-like", "test.record", {}, "cron:other:2026"),
        ("stray", "pgjobs.workflow:v1", {"workflow_id": "w2"}, "workflow:w1x"),
    ]
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name) "
            "VALUES ('report', '0 * * * *', 'test.record')"
        )
        for label, job_name, payload, key in rows:
            cur.execute(
                "INSERT INTO pgjobs_job_queue (job_name, payload, key, status) "
                "VALUES (%s, %s::jsonb || jsonb_build_object('label', %s::text), %s, "
                "'completed')",
                [job_name, json.dumps(payload), label, key],
            )
    before = _keys()
    call_command("migrate", "pgjobs", "0012", verbosity=0)
    assert _keys() == {
        **before,
        "workflow job": "pgjobs.workflow:w1",
        "tick": "pgjobs.cron:report:2026-01-01T00:00:00+00:00",
    }
    call_command("migrate", "pgjobs", "0011", verbosity=0)
    assert _keys() == before


def test_0012_names_the_schedules_that_run_a_reserved_job(before_reserved_names: None) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name) "
            "VALUES ('revive', '* * * * *', 'pgjobs.workflow:v1')"
        )
    with pytest.raises(RuntimeError, match=r"Schedule\(s\) 'revive' \(job 'pgjobs.workflow:v1'\)"):
        call_command("migrate", "pgjobs", "0012", verbosity=0)


def test_0012_lowers_a_catch_up_limit_over_the_new_bound(before_reserved_names: None) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_schedules (name, cron, job_name, catch_up_limit) "
            "VALUES ('many', '* * * * *', 'test.record', 50000)"
        )
    call_command("migrate", "pgjobs", "0012", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT catch_up_limit FROM pgjobs_schedules WHERE name = 'many'")
        assert cur.fetchone()[0] == 1000


@pytest.fixture
def at_0013(transactional_db: None) -> Iterator[None]:
    """The database before 0014 (times in range); migrated back to the latest afterwards."""
    call_command("migrate", "pgjobs", "0013", verbosity=0)
    yield
    with connection.cursor() as cur:
        cur.execute("DELETE FROM pgjobs_job_queue")
        cur.execute("DELETE FROM pgjobs_workers")
    call_command("migrate", "pgjobs", verbosity=0)


def _range_checks() -> dict[str, bool]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT conname, convalidated FROM pg_constraint WHERE conname LIKE 'pgjobs%%_range' "
            "AND conname NOT IN ('pgjobs_job_priority_range', 'pgjobs_job_progress_range', "
            "'pgjobs_schedule_priority_range')"
        )
        return dict(cur.fetchall())


def test_0014_names_the_rows_whose_times_python_cannot_read_and_changes_nothing(
    at_0013: None,
) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, scheduled_for) "
            "VALUES ('test.record', 'infinity') RETURNING id"
        )
        job_id = cur.fetchone()[0]
        cur.execute("INSERT INTO pgjobs_job_queue (job_name) VALUES ('test.record')")
        cur.execute(
            "INSERT INTO pgjobs_workers (id, last_heartbeat_at) VALUES ('w1', '10000-01-01')"
        )
    with pytest.raises(RuntimeError) as refused:
        call_command("migrate", "pgjobs", "0014", verbosity=0)
    message = str(refused.value)
    assert f"pgjobs_job_queue (1 row(s)): id {job_id}: scheduled_for = infinity" in message
    assert "pgjobs_workers (1 row(s)): id w1: last_heartbeat_at = 10000-01-01" in message
    assert "docs/howto/upgrade.md" in message and "Nothing was changed" in message
    assert _range_checks() == {}
    with connection.cursor() as cur:
        cur.execute("SELECT pg_get_functiondef('pgjobs_enqueue'::regproc) LIKE '%%9000-01-01%%'")
        assert cur.fetchone()[0] is False
        cur.execute("UPDATE pgjobs_job_queue SET scheduled_for = now()")
        cur.execute("DELETE FROM pgjobs_workers")
    call_command("migrate", "pgjobs", "0014", verbosity=0)
    checks = _range_checks()
    assert len(checks) == 24 and all(checks.values())


def test_0014_resumes_after_a_run_that_stopped_between_its_steps(at_0013: None) -> None:
    """Adding NOT VALID and validating commit separately: a run stopped in between leaves
    some checks, which the next run keeps and validates."""
    with connection.cursor() as cur:
        cur.execute(
            "ALTER TABLE pgjobs_job_queue ADD CONSTRAINT pgjobs_job_scheduled_for_range "
            "CHECK (scheduled_for >= '0002-01-01 00:00:00+00' "
            "AND scheduled_for < '9000-01-01 00:00:00+00') NOT VALID"
        )
    call_command("migrate", "pgjobs", "0014", verbosity=0)
    checks = _range_checks()
    assert len(checks) == 24 and all(checks.values())
    call_command("migrate", "pgjobs", "0013", verbosity=0)
    assert _range_checks() == {}


def _0014_steps() -> tuple[Any, Any]:
    """Migration 0014's module and the models as they are before it, to run its steps one by
    one."""
    module = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")
    state = MigrationLoader(connection).project_state(("pgjobs", "0013_job_attempt_spared"))
    return module, state.apps


def test_0014_adds_its_checks_not_valid_then_validates_them(at_0013: None) -> None:
    """NOT VALID: the table is not scanned under ACCESS EXCLUSIVE; the scan is VALIDATE's."""
    module, before = _0014_steps()
    with connection.schema_editor(atomic=False) as editor:
        module.add_not_valid(before, editor)
        checks = _range_checks()
        assert len(checks) == 24 and not any(checks.values())
        module.validate(before, editor)
    assert all(_range_checks().values())


def test_0014_names_a_row_written_between_its_read_and_its_checks(at_0013: None) -> None:
    module, before = _0014_steps()
    with connection.cursor() as cur:
        cur.execute("INSERT INTO pgjobs_workers (id, started_at) VALUES ('late', '-infinity')")
    with connection.schema_editor(atomic=False) as editor:
        module.add_not_valid(before, editor)  # an existing row passes NOT VALID
        with pytest.raises(RuntimeError, match="id late: started_at = -infinity"):
            module.validate(before, editor)


@pytest.fixture
def at_0023(transactional_db: None) -> Iterator[None]:
    """The database before 0024 (overridden kept by a trigger); migrated to the latest after."""
    call_command("migrate", "pgjobs", "0023", verbosity=0)
    yield
    call_command("migrate", "pgjobs", verbosity=0)


def test_0024_marks_rows_an_operators_sql_changed_before_it_as_overridden(at_0023: None) -> None:
    with connection.cursor() as cur:
        # Synced from {"concurrency": 5}, then changed with plain SQL (left not overridden).
        cur.execute(
            "INSERT INTO pgjobs_queues (name, declared, concurrency) VALUES "
            "('changed', '{\"concurrency\": 5}', 2), ('synced', '{\"concurrency\": 5}', 5)"
        )
    call_command("migrate", "pgjobs", "0024", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT name, overridden FROM pgjobs_queues ORDER BY name")
        assert cur.fetchall() == [("changed", True), ("synced", False)]
        cur.execute("UPDATE pgjobs_queues SET concurrency = 3 WHERE name = 'synced'")
        cur.execute("SELECT overridden FROM pgjobs_queues WHERE name = 'synced'")
        assert cur.fetchone() == (True,)
    call_command("migrate", "pgjobs", "0023", verbosity=0)  # and back: the trigger is gone
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgjobs_queue_overridden'")
        assert cur.fetchone() == (0,)
