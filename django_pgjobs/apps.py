from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


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
    """TASKS names PgJobsBackend or a subclass of it."""
    from django_pgjobs.tasks.configured import pgjobs_backend_options

    return bool(pgjobs_backend_options())
