from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules, import_string


class PgJobsConfig(AppConfig):
    name = "django_pgjobs"
    label = "pgjobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_pgjobs import checks  # noqa: F401 - registers the system checks
        from django_pgjobs.jobs.options import on_post_migrate
        from django_pgjobs.observability.display import escape_stored_text_in_logs

        # A job name or an error line with a newline must not forge a log line.
        escape_stored_text_in_logs()

        # Jobs inserted from SQL get PGJOBS["MAX_ATTEMPTS"] through the table's default.
        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="django_pgjobs.defaults")

        # Handlers live in each app's ``jobs`` (and ``workflows``) module, as admin classes live
        # in ``admin``: import them everywhere so enqueue() sees their defaults and workers can
        # run them.
        autodiscover_modules("jobs")
        autodiscover_modules("workflows")
        if _uses_pgjobs_backend():
            # Django tasks live in each app's ``tasks`` module by convention; a worker runs
            # only tasks whose module it imported.
            autodiscover_modules("tasks")

        from django_pgjobs.workflows import definitions

        # After every module that may define a workflow is imported: the version digest covers
        # them all.
        definitions.install()


def _uses_pgjobs_backend() -> bool:
    """TASKS names PgJobsBackend or a subclass of it (a backend that cannot be imported is the
    Tasks framework's error to report, not ours)."""
    tasks: Any = getattr(settings, "TASKS", None)
    if not isinstance(tasks, dict):
        return False
    for options in tasks.values():
        path = options.get("BACKEND") if isinstance(options, dict) else None
        if not isinstance(path, str):
            continue
        if path == "django_pgjobs.backend.PgJobsBackend":
            return True
        try:
            backend = import_string(path)
        except Exception:  # noqa: S112 - the framework reports it
            continue
        from django_pgjobs.backend import PgJobsBackend

        if isinstance(backend, type) and issubclass(backend, PgJobsBackend):
            return True
    return False
