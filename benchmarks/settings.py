"""Settings for benchmark runs: the database named by BENCH_DATABASE_URL (set by run.py)."""

from __future__ import annotations

import json
import os

from django_pgjobs.contrib.embedded import database_settings

SECRET_KEY = "benchmarks-only"  # noqa: S105
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django_pgjobs", "benchmarks.bench"]
DATABASES = {"default": database_settings(os.environ["BENCH_DATABASE_URL"])}
# Django's default (0) closes a handler thread's connection after every job; BENCH_CONN_MAX_AGE
# (seconds, or "none" for persistent connections) measures the difference (README, workload 4).
_MAX_AGE = os.environ.get("BENCH_CONN_MAX_AGE", "0")
DATABASES["default"]["CONN_MAX_AGE"] = None if _MAX_AGE.lower() == "none" else int(_MAX_AGE)
# OPTIONS["prepare_threshold"] for enqueue's and the workflows' statements on Django's
# connections: a number, or "none" to prepare nothing; unset, they are prepared from their sixth
# run (django_pgjobs/prepared.py). The worker's own connection prepares only its claims.
_PREPARE = os.environ.get("BENCH_PREPARE_THRESHOLD")
if _PREPARE is not None:
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        None if _PREPARE.lower() == "none" else int(_PREPARE)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PGJOBS = {
    "POLL_INTERVAL": 1.0,
    # soak.py prunes as it goes; run.py measures without pruning.
    "PRUNE_INTERVAL": float(os.environ.get("BENCH_PRUNE_INTERVAL", "3600")),
    "RETENTION": float(os.environ.get("BENCH_RETENTION", "86400")),
}
# benchmarks/pooled.py: PgBouncer on this port in front of the same database, and the settings
# of the setup it measures.
if "BENCH_POOLER_PORT" in os.environ:
    DATABASES["pooled"] = {
        **DATABASES["default"],
        "OPTIONS": dict(DATABASES["default"]["OPTIONS"]),
        "HOST": "127.0.0.1",
        "PORT": os.environ["BENCH_POOLER_PORT"],
    }
PGJOBS.update(json.loads(os.environ.get("BENCH_PGJOBS", "{}")))
# run.py's "at its defaults" figures: the library as a user gets it, with no PGJOBS setting.
if os.environ.get("BENCH_LIBRARY_DEFAULTS"):
    PGJOBS = {}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
