"""The Tasks backend is importable, buildable and checked without a database: a project's
``manage.py check`` (in CI, with no server) and any module declaring a ``@task`` at import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
from importlib.util import find_spec
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_pgjobs"]
    + ([] if find_spec("django.tasks") else ["django_tasks"]),  # the backport on Django 5.2
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1",
                           "PORT": 1, "NAME": "nowhere", "USER": "nobody"}},
    TASKS={"default": {"BACKEND": "django_pgjobs.backend.PgJobsBackend",
                       "OPTIONS": {"RETRIES": 1}}},
    USE_TZ=True,
)
import django_pgjobs.backend  # before django.setup(): no models, no database
import django
django.setup()
from django.core.management import call_command
from django.core.management.base import SystemCheckError
try:
    call_command("check")
except SystemCheckError as error:
    print(error)
"""


def test_the_backend_imports_and_is_checked_with_no_database_reachable() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    # The check ran, found the bad option, and nothing tried to connect.
    assert "pgjobs.E030" in output, output
    assert "connection" not in output.lower(), output
