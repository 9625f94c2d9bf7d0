"""Which entries of ``settings.TASKS`` are django-pgjobs' backend: the app imports the
``tasks`` modules only when one is, and the router lets the queue's migrations run on the
database one names (``OPTIONS["DATABASE"]``). Settings only, imported only when asked."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

BACKEND = "django_pgjobs.backend.PgJobsBackend"


def pgjobs_backend_options() -> list[dict[str, Any]]:
    """The ``OPTIONS`` of each ``TASKS`` entry whose backend is PgJobsBackend or a subclass of
    it (a backend that cannot be imported is the Tasks framework's error to report, not ours)."""
    tasks: Any = getattr(settings, "TASKS", None)
    if not isinstance(tasks, dict):
        return []
    found = []
    for entry in tasks.values():
        path = entry.get("BACKEND") if isinstance(entry, dict) else None
        if not isinstance(path, str):
            continue
        if path != BACKEND:
            try:
                backend = import_string(path)
            except Exception:  # noqa: S112 - the framework reports it
                continue
            from django_pgjobs.backend import PgJobsBackend

            if not (isinstance(backend, type) and issubclass(backend, PgJobsBackend)):
                continue
        options = entry.get("OPTIONS")
        found.append(options if isinstance(options, dict) else {})
    return found
