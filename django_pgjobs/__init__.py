"""Durable background jobs for Django with PostgreSQL as the only infrastructure.

The public API is imported lazily: Django imports this package to find the app config before
models can be loaded, so nothing here may touch models at import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_pgjobs.enqueueing import enqueue, enqueue_many, enqueue_on_commit
    from django_pgjobs.exceptions import (
        HandlerAlreadyRegistered,
        InvalidJobError,
        JobNotFound,
        JobStateError,
        PayloadNotSerializable,
        PgJobsError,
    )
    from django_pgjobs.jobs import (
        cancel_job,
        get_job,
        list_dead_letter_jobs,
        list_jobs,
        prune_jobs,
        retry_dead_letter_job,
        retry_job,
    )
    from django_pgjobs.registry import JobHandler, job, register
    from django_pgjobs.schedules import cron, schedule

_EXPORTS = {
    "enqueue": "enqueueing",
    "enqueue_many": "enqueueing",
    "enqueue_on_commit": "enqueueing",
    "HandlerAlreadyRegistered": "exceptions",
    "InvalidJobError": "exceptions",
    "JobNotFound": "exceptions",
    "JobStateError": "exceptions",
    "PayloadNotSerializable": "exceptions",
    "PgJobsError": "exceptions",
    "cancel_job": "jobs",
    "get_job": "jobs",
    "list_dead_letter_jobs": "jobs",
    "list_jobs": "jobs",
    "prune_jobs": "jobs",
    "retry_dead_letter_job": "jobs",
    "retry_job": "jobs",
    "JobHandler": "registry",
    "job": "registry",
    "register": "registry",
    "cron": "schedules",
    "schedule": "schedules",
}

__all__ = [
    "HandlerAlreadyRegistered",
    "InvalidJobError",
    "JobHandler",
    "JobNotFound",
    "JobStateError",
    "PayloadNotSerializable",
    "PgJobsError",
    "cancel_job",
    "cron",
    "enqueue",
    "enqueue_many",
    "enqueue_on_commit",
    "get_job",
    "job",
    "list_dead_letter_jobs",
    "list_jobs",
    "prune_jobs",
    "register",
    "retry_dead_letter_job",
    "retry_job",
    "schedule",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'django_pgjobs' has no attribute {name!r}")
    return getattr(importlib.import_module(f"django_pgjobs.{module}"), name)
