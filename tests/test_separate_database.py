"""A queue in a database of its own beside a ``default`` that is not PostgreSQL (a new user's
trial: SQLite for the project, PostgreSQL for the queue): ``migrate`` of ``default`` leaves the
queue out, and nothing of ours asks SQLite a PostgreSQL question."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.test import override_settings

from django_pgjobs.jobs.options import on_post_migrate
from tests.helpers import ROOT, database_conninfo

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
    DATABASE_ROUTERS=[] if mode == "check-without-router" else [
        "django_pgjobs.routers.QueueDatabaseRouter"
    ],
    USE_TZ=True,
)
import django
django.setup()
from django.core.management import call_command
call_command("check" if mode == "check-without-router" else "migrate", verbosity=0)
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


def test_after_migrating_another_database_post_migrate_asks_it_nothing() -> None:
    """No database access is allowed in this test: a query would fail it. 'other' is a
    PostgreSQL alias the router keeps the queue off, as it keeps it off a SQLite default."""
    with override_settings(DATABASE_ROUTERS=[ROUTER]):
        on_post_migrate(sender=apps.get_app_config("pgjobs"), using="other", plan=[])
