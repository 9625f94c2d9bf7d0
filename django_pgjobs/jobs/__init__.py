"""Jobs: handlers and their registry, what a running handler may rely on, putting jobs in the
queue (:mod:`.producer`), a job's options, checking input, the
backoff policy, and the operator's functions on one job, ``explain_job`` among them (defined
with the other read-outs, in :mod:`django_pgjobs.observability`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_pgjobs.exports import lazy_exports

_EXPORTS = {
    "job": "django_pgjobs.jobs.registry",
    "register": "django_pgjobs.jobs.registry",
    "JobHandler": "django_pgjobs.jobs.registry",
    "ProgressReporter": "django_pgjobs.jobs.context",
    "RunningAttempt": "django_pgjobs.jobs.context",
    "current_attempt": "django_pgjobs.jobs.context",
    "enqueue": "django_pgjobs.jobs.producer",
    "enqueue_many": "django_pgjobs.jobs.producer",
    "enqueue_on_commit": "django_pgjobs.jobs.producer",
    "get_job": "django_pgjobs.jobs.operations",
    "list_jobs": "django_pgjobs.jobs.operations",
    "retry_job": "django_pgjobs.jobs.operations",
    "cancel_job": "django_pgjobs.jobs.operations",
    "prune_jobs": "django_pgjobs.jobs.operations",
    "list_dead_letter_jobs": "django_pgjobs.jobs.operations",
    "retry_dead_letter_job": "django_pgjobs.jobs.operations",
    "requeue_dead_letter_jobs": "django_pgjobs.jobs.operations",
    "explain_job": "django_pgjobs.observability.explain",
    "Explanation": "django_pgjobs.observability.explanation",
    "Blocker": "django_pgjobs.observability.explanation",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from django_pgjobs.jobs.context import ProgressReporter as ProgressReporter
    from django_pgjobs.jobs.context import RunningAttempt as RunningAttempt
    from django_pgjobs.jobs.context import current_attempt as current_attempt
    from django_pgjobs.jobs.operations import cancel_job as cancel_job
    from django_pgjobs.jobs.operations import get_job as get_job
    from django_pgjobs.jobs.operations import list_dead_letter_jobs as list_dead_letter_jobs
    from django_pgjobs.jobs.operations import list_jobs as list_jobs
    from django_pgjobs.jobs.operations import prune_jobs as prune_jobs
    from django_pgjobs.jobs.operations import requeue_dead_letter_jobs as requeue_dead_letter_jobs
    from django_pgjobs.jobs.operations import retry_dead_letter_job as retry_dead_letter_job
    from django_pgjobs.jobs.operations import retry_job as retry_job
    from django_pgjobs.jobs.producer import enqueue as enqueue
    from django_pgjobs.jobs.producer import enqueue_many as enqueue_many
    from django_pgjobs.jobs.producer import enqueue_on_commit as enqueue_on_commit
    from django_pgjobs.jobs.registry import JobHandler as JobHandler
    from django_pgjobs.jobs.registry import job as job
    from django_pgjobs.jobs.registry import register as register
    from django_pgjobs.observability.explain import explain_job as explain_job
    from django_pgjobs.observability.explanation import Blocker as Blocker
    from django_pgjobs.observability.explanation import Explanation as Explanation
