"""A job's options come from one place, and jobs from SQL get the configured attempts too."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings

from django_pgjobs import enqueue, get_job
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs.options import resolve_options, sync_table_defaults
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.models import Job
from tests.helpers import in_thread, second_connection, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def restore_table_defaults() -> Iterator[None]:
    """These tests commit an ALTER TABLE; put the suite's default back after each."""
    yield
    sync_table_defaults("default")


def sql_job(statement: str) -> Job:
    with connection.cursor() as cur:
        cur.execute(statement)
    return Job.objects.latest("created_at")


def test_explicit_then_handler_then_settings(register_handler: Callable[..., JobHandler]) -> None:
    register_handler("opts.job", lambda payload: None, queue="mail", max_attempts=7)
    with override_settings(PGJOBS={"MAX_ATTEMPTS": 4}):
        assert vars(resolve_options("opts.job")) == {
            "queue": "mail", "priority": 0, "max_attempts": 7,
        }  # fmt: skip
        assert vars(resolve_options("opts.job", queue="q", priority=5, max_attempts=1)) == {
            "queue": "q", "priority": 5, "max_attempts": 1,
        }  # fmt: skip
        assert vars(resolve_options("no.handler")) == {
            "queue": "default", "priority": 0, "max_attempts": 4,
        }  # fmt: skip


def test_bad_options_are_refused_before_anything_is_written() -> None:
    with pytest.raises(InvalidJobError, match="priority"):
        resolve_options("x", priority=1000)
    with pytest.raises(InvalidJobError, match="queue name"):
        resolve_options("x", queue="")


@pytest.mark.usefixtures("restore_table_defaults")
def test_sql_inserts_get_max_attempts_from_settings_after_migrate() -> None:
    with override_settings(PGJOBS={"MAX_ATTEMPTS": 5}):
        assert sync_table_defaults("default") is True
        assert sync_table_defaults("default") is False  # already so: no ALTER TABLE again
        plain = sql_job("INSERT INTO pgjobs_job_queue (job_name) VALUES ('test.record')")
        function = sql_job("SELECT pgjobs_enqueue('test.record')")
        explicit = sql_job("SELECT pgjobs_enqueue('test.record', max_attempts => 2)")
        from_python = get_job(enqueue("test.record"))
    assert [j.max_attempts for j in (plain, function, explicit, from_python)] == [5, 5, 2, 5]


@pytest.mark.usefixtures("restore_table_defaults")
def test_migrate_sets_the_default(settings: Any) -> None:
    from django.core.management import call_command

    settings.PGJOBS = {"MAX_ATTEMPTS": 6}
    call_command("migrate", "pgjobs", verbosity=0)  # nothing to apply; post_migrate still runs
    assert sql_job("SELECT pgjobs_enqueue('test.record')").max_attempts == 6


def _alter_waiting_for_its_lock() -> bool:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'ALTER TABLE pgjobs_job_queue%%'"
        )
        return bool(cur.fetchone()[0])


@pytest.mark.usefixtures("restore_table_defaults")
def test_syncing_the_default_never_stalls_the_queue_behind_a_long_transaction() -> None:
    """A report query (any open transaction that read the table) holds ACCESS SHARE; the ALTER's
    queued ACCESS EXCLUSIVE request then blocks every enqueue and claim for up to 5 s."""
    holder = second_connection(autocommit=False)
    other = second_connection()
    try:
        holder.execute("SELECT count(*) FROM pgjobs_job_queue")
        with override_settings(PGJOBS={"MAX_ATTEMPTS": 7}):
            thread = in_thread(lambda: sync_table_defaults("default"))
            wait_for(_alter_waiting_for_its_lock, what="the ALTER TABLE to queue for its lock")
            started = time.monotonic()
            other.execute("INSERT INTO pgjobs_job_queue (job_name) VALUES ('test.record')")
            took = time.monotonic() - started
            thread.join(10)
    finally:
        holder.rollback()
        holder.close()
        other.close()
    assert took < 1.0, f"an enqueue waited {took:.1f}s behind the ALTER TABLE"


@pytest.mark.usefixtures("restore_table_defaults")
def test_syncing_the_default_gives_up_after_about_two_seconds_and_keeps_the_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What docs/howto/sql.md says: three tries of 200, 200 and 500 ms with half a second
    between them (it said "at most 5 s", as a new user's trial found), then a warning."""
    holder = second_connection(autocommit=False)
    try:
        holder.execute("SELECT count(*) FROM pgjobs_job_queue")
        with override_settings(PGJOBS={"MAX_ATTEMPTS": 9}), caplog.at_level(logging.WARNING):
            started = time.monotonic()
            assert sync_table_defaults("default") is False
            took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert 1.9 <= took < 3.0, took
    assert "Could not set pgjobs_job_queue.max_attempts to default to 9" in caplog.text
    assert sql_job("SELECT pgjobs_enqueue('test.record')").max_attempts != 9


@pytest.mark.usefixtures("restore_table_defaults")
def test_syncing_the_default_inside_a_transaction_leaves_its_lock_timeout_alone() -> None:
    with override_settings(PGJOBS={"MAX_ATTEMPTS": 8}), transaction.atomic():
        assert sync_table_defaults("default") is True
        with connection.cursor() as cur:
            cur.execute("SHOW lock_timeout")
            assert cur.fetchone()[0] == "0"  # SET LOCAL outlived the savepoint: '5s'


@pytest.mark.usefixtures("restore_table_defaults")
def test_a_max_attempts_postgres_cannot_store_never_becomes_the_table_default() -> None:
    """E004 accepts any int >= 1; the ALTER succeeds, and every plain INSERT and every
    pgjobs_enqueue() without max_attempts fails from then on."""
    with override_settings(PGJOBS={"MAX_ATTEMPTS": 2**31}):
        sync_table_defaults("default")
    with connection.cursor() as cur:
        cur.execute("INSERT INTO pgjobs_job_queue (job_name) VALUES ('test.record')")
        cur.execute("SELECT pgjobs_enqueue('test.record')")


@pytest.mark.usefixtures("restore_table_defaults")
@pytest.mark.parametrize("value", [True, 2.5, "7", "abc", None])
def test_an_invalid_max_attempts_leaves_the_table_default_alone(value: object) -> None:
    """sync_table_defaults() means to skip what pgjobs.E004 reports, but conf.MAX_ATTEMPTS is
    int(...) of the setting: True becomes 1, 2.5 becomes 2, "abc" raises out of migrate/flush."""
    with override_settings(PGJOBS={"MAX_ATTEMPTS": value}):
        assert sync_table_defaults("default") is False
