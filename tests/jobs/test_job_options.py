"""A job's options come from one place, and jobs from SQL get the configured attempts too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings

from django_pgjobs import enqueue, get_job
from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs.options import resolve_options, sync_table_defaults
from django_pgjobs.jobs.registry import JobHandler
from django_pgjobs.models import Job

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
