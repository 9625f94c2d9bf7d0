"""Durable background jobs for Django with PostgreSQL as the only infrastructure.

The public API: define and enqueue jobs, schedule them, write workflows, and act on one job or
workflow. Everything else is importable from the sub-package that owns it (``django_pgjobs.jobs``,
``.schedules``, ``.workflows``, ``.worker``, ``.exceptions``). Names load on first use: Django
imports this package before models can be loaded (see :mod:`django_pgjobs.exports`).

``django_pgjobs.list_jobs`` (a name another sub-package exports) raises an AttributeError saying
where to import it from. ``from django_pgjobs import list_jobs`` cannot say so: Python replaces
that AttributeError, message and all, with its own "cannot import name" ImportError (and raising
ImportError here instead would break ``hasattr()`` and ``getattr(..., default)``). The docs list
every name with its home.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_pgjobs.exports import lazy_exports

# The one version source: pyproject.toml reads it (setuptools' dynamic version), and
# importlib.metadata.version("django-pgjobs") of an installed copy says the same.
__version__ = "0.1.0"

# The one table of public names: name -> the module that defines it.
_EXPORTS = {
    "job": "django_pgjobs.jobs.registry",
    "enqueue": "django_pgjobs.jobs.producer",
    "enqueue_many": "django_pgjobs.jobs.producer",
    "enqueue_on_commit": "django_pgjobs.jobs.producer",
    "ProgressReporter": "django_pgjobs.jobs.context",
    "current_attempt": "django_pgjobs.jobs.context",
    "Snooze": "django_pgjobs.exceptions",
    "Retry": "django_pgjobs.exceptions",
    "Discard": "django_pgjobs.exceptions",
    "Cancel": "django_pgjobs.exceptions",
    "get_job": "django_pgjobs.jobs.operations",
    "retry_job": "django_pgjobs.jobs.operations",
    "cancel_job": "django_pgjobs.jobs.operations",
    "explain_job": "django_pgjobs.observability.explain",
    "cron": "django_pgjobs.schedules.declarations",
    "schedule": "django_pgjobs.schedules.declarations",
    "workflow": "django_pgjobs.workflows.definitions",
    "step": "django_pgjobs.workflows.definitions",
    "transaction_step": "django_pgjobs.workflows.definitions",
    "start_workflow": "django_pgjobs.workflows.api",
    "run_workflow": "django_pgjobs.workflows.api",
    "get_workflow": "django_pgjobs.workflows.handles",
    "cancel_workflow": "django_pgjobs.workflows.control",
    "send": "django_pgjobs.workflows.api",
    "recv": "django_pgjobs.workflows.waits",
    "sleep": "django_pgjobs.workflows.waits",
    "set_event": "django_pgjobs.workflows.api",
    "get_event": "django_pgjobs.workflows.api",
    "PgJobsError": "django_pgjobs.exceptions",
}
__all__ = list(_EXPORTS)
# Everything else is in the sub-package that owns it; asking here for one of those says where.
__getattr__ = lazy_exports(
    __name__,
    _EXPORTS,
    elsewhere=(
        "django_pgjobs.jobs",
        "django_pgjobs.queues",
        "django_pgjobs.schedules",
        "django_pgjobs.workflows",
        "django_pgjobs.worker",
        "django_pgjobs.exceptions",
    ),
)

if TYPE_CHECKING:
    from django_pgjobs.exceptions import Cancel as Cancel
    from django_pgjobs.exceptions import Discard as Discard
    from django_pgjobs.exceptions import PgJobsError as PgJobsError
    from django_pgjobs.exceptions import Retry as Retry
    from django_pgjobs.exceptions import Snooze as Snooze
    from django_pgjobs.jobs.context import ProgressReporter as ProgressReporter
    from django_pgjobs.jobs.context import current_attempt as current_attempt
    from django_pgjobs.jobs.operations import cancel_job as cancel_job
    from django_pgjobs.jobs.operations import get_job as get_job
    from django_pgjobs.jobs.operations import retry_job as retry_job
    from django_pgjobs.jobs.producer import enqueue as enqueue
    from django_pgjobs.jobs.producer import enqueue_many as enqueue_many
    from django_pgjobs.jobs.producer import enqueue_on_commit as enqueue_on_commit
    from django_pgjobs.jobs.registry import job as job
    from django_pgjobs.observability.explain import explain_job as explain_job
    from django_pgjobs.schedules.declarations import cron as cron
    from django_pgjobs.schedules.declarations import schedule as schedule
    from django_pgjobs.workflows.api import get_event as get_event
    from django_pgjobs.workflows.api import run_workflow as run_workflow
    from django_pgjobs.workflows.api import send as send
    from django_pgjobs.workflows.api import set_event as set_event
    from django_pgjobs.workflows.api import start_workflow as start_workflow
    from django_pgjobs.workflows.control import cancel_workflow as cancel_workflow
    from django_pgjobs.workflows.definitions import step as step
    from django_pgjobs.workflows.definitions import transaction_step as transaction_step
    from django_pgjobs.workflows.definitions import workflow as workflow
    from django_pgjobs.workflows.handles import get_workflow as get_workflow
    from django_pgjobs.workflows.waits import recv as recv
    from django_pgjobs.workflows.waits import sleep as sleep
