"""A queue in a database of its own beside a ``default`` that is not PostgreSQL (a new user's
trial: SQLite for the project, PostgreSQL for the queue): ``migrate`` of ``default`` leaves the
queue out, and nothing of ours asks SQLite a PostgreSQL question."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_pgjobs.exceptions import InvalidJobError
from django_pgjobs.jobs import (
    cancel_job,
    enqueue,
    enqueue_many,
    enqueue_on_commit,
    explain_job,
    get_job,
    list_dead_letter_jobs,
    list_jobs,
    prune_jobs,
    requeue_dead_letter_jobs,
    retry_dead_letter_job,
    retry_job,
)
from django_pgjobs.jobs.options import on_post_migrate
from django_pgjobs.models import Job
from django_pgjobs.queues import pause_queue, set_queue_limits
from django_pgjobs.schedules import run_schedule_now
from django_pgjobs.tasks import framework
from django_pgjobs.testing import advance, drain
from django_pgjobs.worker import Worker
from django_pgjobs.workflows import (
    cancel_workflow,
    fork_workflow,
    get_event,
    get_workflow,
    list_workflow_steps,
    list_workflows,
    resume_workflow,
    send,
    start_workflow,
)
from tests.helpers import ROOT, database_conninfo
from tests.testapp.tasks import add

ROUTER = "django_pgjobs.routers.QueueDatabaseRouter"

# A project of its own, in a process of its own: its DATABASES differ from the suite's.
_PROJECT = """
import sys
from django.conf import settings
from django_pgjobs.contrib.embedded import database_settings

mode, sqlite_file, queue_url = sys.argv[1:]
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_pgjobs"],
    DATABASES={
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_file},
        "jobs": database_settings(queue_url),
    },
    PGJOBS={"DATABASE": "jobs"},
    DATABASE_ROUTERS=[] if mode.endswith("without-router") else [
        "django_pgjobs.routers.QueueDatabaseRouter"
    ],
    USE_TZ=True,
)
import django
django.setup()
from django.core.management import call_command
call_command("check" if mode == "check-without-router" else "migrate", verbosity=0)
if mode == "worker":
    # Jobs that use the SQLite default, one handler thread: each job leaves the thread a
    # connection to it, which the next job of that thread meets.
    from django.db import connection
    from django_pgjobs import enqueue, job
    from django_pgjobs.worker import Worker

    @job("beside.touch_default", queue="beside")
    def touch_default(payload):
        with connection.cursor() as cur:
            cur.execute("SELECT 1")

    for _ in range(3):
        enqueue("beside.touch_default")
    Worker(concurrency=1, queues=["beside"]).run(burst=True)
"""


def run_project(mode: str, sqlite_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-c", _PROJECT, mode, str(sqlite_file), database_conninfo()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.django_db  # the queue's database: the suite's test database
def test_migrate_of_a_sqlite_default_records_the_queue_and_creates_none_of_it(
    tmp_path: Path,
) -> None:
    sqlite_file = tmp_path / "db.sqlite3"
    ran = run_project("migrate", sqlite_file)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == ""
    with sqlite3.connect(sqlite_file) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        recorded = db.execute("SELECT count(*) FROM django_migrations WHERE app = 'pgjobs'")
        assert recorded.fetchone()[0] > 0  # as Django records a migration a router skipped
    assert "auth_user" in tables
    assert [name for name in tables if name.startswith("pgjobs")] == []


@pytest.mark.django_db
def test_without_the_router_the_check_says_to_add_it(tmp_path: Path) -> None:
    ran = run_project("check-without-router", tmp_path / "db.sqlite3")
    assert "(pgjobs.W003) PGJOBS['DATABASE'] is 'jobs', but the routers let" in ran.stderr
    assert f"Add {ROUTER!r} to DATABASE_ROUTERS" in ran.stderr


@pytest.mark.django_db
def test_without_the_router_migrate_refuses_a_sqlite_default_before_creating_anything(
    tmp_path: Path,
) -> None:
    """It failed at the second migration's SQL ('unrecognized token'), the first one's tables
    created on SQLite and recorded as applied."""
    sqlite_file = tmp_path / "db.sqlite3"
    ran = run_project("migrate-without-router", sqlite_file)
    assert ran.returncode != 0
    assert "django-pgjobs' tables need PostgreSQL, and database 'default' is sqlite" in ran.stderr
    assert "QueueDatabaseRouter' first in DATABASE_ROUTERS" in ran.stderr
    with sqlite3.connect(sqlite_file) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        recorded = db.execute("SELECT count(*) FROM django_migrations WHERE app = 'pgjobs'")
        assert recorded.fetchone()[0] == 0
    assert "auth_user" in tables  # the apps before it in the plan were migrated as usual
    assert [name for name in tables if name.startswith("pgjobs")] == []


@pytest.mark.django_db(transaction=True)  # the queue's database, written by the project
def test_a_worker_runs_job_after_job_that_use_a_sqlite_default(tmp_path: Path) -> None:
    """Each job left its handler thread a connection to SQLite, which the thread's checks read
    as psycopg's: every later job of the thread failed before it ran (a new user's trial)."""
    ran = run_project("worker", tmp_path / "db.sqlite3")
    assert ran.returncode == 0, ran.stderr
    assert "AttributeError" not in ran.stderr
    jobs = Job.objects.filter(job_name="beside.touch_default")
    assert list(jobs.values_list("status", "attempt")) == [("completed", 1)] * 3


def test_after_migrating_another_database_post_migrate_asks_it_nothing() -> None:
    """No database access is allowed in this test: a query would fail it. 'other' is a
    PostgreSQL alias the router keeps the queue off, as it keeps it off a SQLite default."""
    with override_settings(DATABASE_ROUTERS=[ROUTER]):
        on_post_migrate(sender=apps.get_app_config("pgjobs"), using="other", plan=[])


def test_post_migrate_asks_a_sqlite_database_nothing_whatever_the_routers_say() -> None:
    """No database access is allowed here either: 'sqlite' is a real SQLite alias of the suite's
    settings, and no router keeps the queue off it."""
    on_post_migrate(sender=apps.get_app_config("pgjobs"), using="sqlite", plan=[])


# Every public entry point that takes a database alias, called with one that is not PostgreSQL.
# None may reach the database: these tests are allowed none.
SOME_ID = "00000000-0000-0000-0000-000000000001"
GIVEN_SQLITE = {
    "enqueue": lambda: enqueue("test.record", using="sqlite"),
    "enqueue_many": lambda: enqueue_many("test.record", [1], using="sqlite"),
    "enqueue_on_commit": lambda: enqueue_on_commit("test.record", using="sqlite"),
    "get_job": lambda: get_job(SOME_ID, using="sqlite"),
    "list_jobs": lambda: list_jobs(using="sqlite"),
    "retry_job": lambda: retry_job(SOME_ID, using="sqlite"),
    "cancel_job": lambda: cancel_job(SOME_ID, using="sqlite"),
    "prune_jobs": lambda: prune_jobs(using="sqlite"),
    "list_dead_letter_jobs": lambda: list_dead_letter_jobs(using="sqlite"),
    "retry_dead_letter_job": lambda: retry_dead_letter_job(SOME_ID, using="sqlite"),
    "requeue_dead_letter_jobs": lambda: requeue_dead_letter_jobs(using="sqlite"),
    "explain_job": lambda: explain_job(SOME_ID, using="sqlite"),
    "pause_queue": lambda: pause_queue("default", using="sqlite"),
    "set_queue_limits": lambda: set_queue_limits("default", concurrency=1, using="sqlite"),
    "run_schedule_now": lambda: run_schedule_now("nightly", using="sqlite"),
    "get_workflow": lambda: get_workflow("w", using="sqlite"),
    "list_workflows": lambda: list_workflows(using="sqlite"),
    "list_workflow_steps": lambda: list_workflow_steps("w", using="sqlite"),
    "cancel_workflow": lambda: cancel_workflow("w", using="sqlite"),
    "resume_workflow": lambda: resume_workflow("w", using="sqlite"),
    "fork_workflow": lambda: fork_workflow("w", using="sqlite"),
    "Worker": lambda: Worker(using="sqlite"),
    "drain": lambda: drain(using="sqlite"),
    "advance": lambda: advance(60, using="sqlite"),
}


@pytest.mark.parametrize("call", GIVEN_SQLITE.values(), ids=GIVEN_SQLITE.keys())
def test_an_alias_that_is_not_postgresql_is_refused_naming_it_and_its_vendor(
    call: Callable[[], object],
) -> None:
    with pytest.raises(InvalidJobError) as refused:
        call()
    assert str(refused.value) == (
        "Database 'sqlite' is SQLite (django.db.backends.sqlite3), not PostgreSQL: "
        "django-pgjobs' queue lives in PostgreSQL only. Name the queue's alias "
        "(PGJOBS['DATABASE'] is 'default'), or leave it out."
    )


QUEUE_IN_SQLITE = {
    "start_workflow": lambda: start_workflow("test.greet", "you"),
    "send": lambda: send("w", "hello"),
    "get_event": lambda: get_event("w", "done", timeout=0),
    "enqueue": lambda: enqueue("test.record"),
}


@pytest.mark.parametrize("call", QUEUE_IN_SQLITE.values(), ids=QUEUE_IN_SQLITE.keys())
def test_a_queue_database_setting_that_is_not_postgresql_is_refused_at_the_call(
    call: Callable[[], object],
) -> None:
    """What the system check pgjobs.E001 reports, for code that runs without the checks."""
    with (
        override_settings(PGJOBS={"DATABASE": "sqlite"}),
        pytest.raises(InvalidJobError) as refused,
    ):
        call()
    assert str(refused.value).startswith(
        "PGJOBS['DATABASE'] is 'sqlite', which is SQLite (django.db.backends.sqlite3), not "
        "PostgreSQL"
    )


def test_a_tasks_backend_whose_database_is_not_postgresql_is_refused_at_enqueue() -> None:
    tasks_in_sqlite = {
        "default": {
            "BACKEND": "django_pgjobs.backend.PgJobsBackend",
            "QUEUES": [],
            "OPTIONS": {"DATABASE": "sqlite"},
        }
    }
    with override_settings(TASKS=tasks_in_sqlite):
        [error] = [m for m in framework.task_backends["default"].check() if m.id == "pgjobs.E033"]
        assert error.msg == (
            "TASKS['default']['OPTIONS']['DATABASE'] is 'sqlite', which uses "
            "'django.db.backends.sqlite3', not PostgreSQL: the backend's jobs live in "
            "django-pgjobs' tables."
        )
        with pytest.raises(InvalidJobError, match=r"^Database 'sqlite' is SQLite"):
            add.enqueue(1, 2)


def test_a_command_given_a_database_that_is_not_postgresql_says_so() -> None:
    with pytest.raises(CommandError, match=r"^Database 'sqlite' is SQLite"):
        call_command("pgjobs", "--database", "sqlite", "status")
