"""Settings for the test suite: real PostgreSQL, from DATABASE_URL or an embedded server."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from django_pgjobs.contrib.embedded import database_settings, database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_admin_listfilter_dropdown",  # the admin's filters (a django-pgjobs dependency)
    "django_pgjobs",
    "tests.testapp",
]

# Django's Tasks framework: built in on Django 6, the django-tasks backport on Django 5.2.
try:
    import django.tasks  # noqa: F401
except ImportError:
    INSTALLED_APPS.append("django_tasks")

TASKS = {
    "default": {
        "BACKEND": "django_pgjobs.backend.PgJobsBackend",
        "QUEUES": ["default", "emails", "low"],
    },
}

_URL = database_url(BASE_DIR / ".pgdata-test")
DATABASES = {
    # Worker subprocesses get a DATABASE_URL naming this database (see tests/helpers.py).
    # PGJOBS_TEST_DB lets two test runs share one server without dropping each other's database.
    "default": database_settings(
        _URL, TEST={"NAME": os.environ.get("PGJOBS_TEST_DB", "test_pgjobs")}
    ),
    # Another connection to the same test database: stands in for a second database whose
    # commit a job must wait for (enqueue_on_commit(commit_of=...)).
    "other": database_settings(_URL, TEST={"MIRROR": "default"}),
    # Nothing listens on port 1: for testing how the worker behaves while the database is down.
    "unreachable": database_settings(
        "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1", TEST={"MIRROR": "default"}
    ),
    # Another vendor, as a project's own default may be beside a queue of its own: no test
    # creates or opens it (tests/test_separate_database.py proves nothing of ours asks it).
    "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
# Migrations and model checks on "default" only (tests/routers.py says why).
DATABASE_ROUTERS = ["tests.routers.DefaultOnly"]


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


# PgBouncer in transaction mode in front of the test database, on a port chosen here once and
# passed on in the environment, so worker subprocesses (which import these settings again) use
# the same one. Started by tests/pooled's fixture; nothing listens there otherwise.
POOLER_PORT = os.environ.setdefault("PGJOBS_TEST_POOLER_PORT", _free_port())
DATABASES["pooled"] = {
    **database_settings(_URL, TEST={"MIRROR": "default"}),
    "HOST": "127.0.0.1",
    "PORT": POOLER_PORT,
}

# Subprocess workers get short leases through this variable so crash tests finish quickly.
PGJOBS = json.loads(os.environ.get("PGJOBS_TEST_SETTINGS", "{}"))

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_pgjobs": {"handlers": ["console"], "level": "WARNING"}},
}
# A worker process started with its own LOGGING (tests.helpers.start_worker(logging=...)).
if "PGJOBS_TEST_LOGGING" in os.environ:
    LOGGING = json.loads(os.environ["PGJOBS_TEST_LOGGING"])
