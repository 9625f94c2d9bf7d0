"""Settings for benchmark runs: the database named by BENCH_DATABASE_URL (set by run.py)."""

from __future__ import annotations

import os

from django_pgjobs.embedded import database_settings

SECRET_KEY = "benchmarks-only"  # noqa: S105
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django_pgjobs", "benchmarks.bench"]
DATABASES = {"default": database_settings(os.environ["BENCH_DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PGJOBS = {"POLL_INTERVAL": 1.0, "PRUNE_INTERVAL": 3600.0}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
