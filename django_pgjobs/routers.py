"""The database router for a queue in a database of its own (``PGJOBS["DATABASE"]`` not
``default``): ``DATABASE_ROUTERS = ["django_pgjobs.routers.QueueDatabaseRouter"]``.

Without it Django migrates every app on every database it is asked to: a plain ``migrate``
(``default``) would run the queue's migrations there too, PostgreSQL functions and triggers on
what may be SQLite, and a ``default`` that is PostgreSQL would get a second, unused queue. The
library's own reads and writes name their database already; the router sends a project's own
queries on the queue's models (``Job.objects.filter(...)``) to the same place.

It answers for this app only and None for every other, so it composes with the project's routers;
it goes first, as Django takes the first answer and a router that answers for every app (the
docs' PrimaryReplicaRouter) would decide for this one too. The check ``pgjobs.W003`` warns while
the queue's migrations would run elsewhere.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from django_pgjobs.conf import conf
from django_pgjobs.tasks.configured import pgjobs_backend_options

# PgJobsConfig.label, which its models and migrations carry (not imported: the app config
# imports the checks, which import this module).
APP_LABEL = "pgjobs"


def queue_databases() -> set[str]:
    """The aliases the queue's tables live in: ``PGJOBS["DATABASE"]``, and the
    ``OPTIONS["DATABASE"]`` of each Tasks backend that is django-pgjobs'."""
    aliases = {conf.DATABASE}
    for options in pgjobs_backend_options():
        database = options.get("DATABASE")
        if isinstance(database, str) and database:
            aliases.add(database)
    return aliases


class QueueDatabaseRouter:
    """Reads and writes of django-pgjobs' models go to the database of the instance at hand,
    else to ``PGJOBS["DATABASE"]``, and its migrations run only on the queue's databases
    (:func:`queue_databases`)."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return _queue_database_of(model, hints)

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return _queue_database_of(model, hints)

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label != APP_LABEL:
            return None
        return db in queue_databases()


def _queue_database_of(model: type[Model], hints: dict[str, Any]) -> str | None:
    """The database an instance came from (Django's ``instance`` hint, as its docs on routers
    advise), else ``PGJOBS["DATABASE"]``: a job read from a Tasks backend's own database
    (``Job.objects.using("jobs2").get(...)``) and saved was written into ``PGJOBS["DATABASE"]``
    as a second job, which ran twice."""
    if model._meta.app_label != APP_LABEL:
        return None
    instance = hints.get("instance")
    if isinstance(instance, Model) and instance._state.db:
        return instance._state.db
    return conf.DATABASE
