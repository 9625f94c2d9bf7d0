"""The admin's list filters: django-admin-list-filter-dropdown's select boxes, with choices from
somewhere cheap (the registry, a skip scan, the newest rows) instead of a DISTINCT over a table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest

from django_pgjobs.conf import conf
from django_pgjobs.jobs.registry import registry
from django_pgjobs.models import FailedJob, Job
from django_pgjobs.observability import dashboard
from django_pgjobs.queries.base import WORKFLOW_JOB_PREFIX

if TYPE_CHECKING:
    # django-admin-list-filter-dropdown ships no types: mypy sees its classes' Django bases.
    from django.contrib.admin.filters import ChoicesFieldListFilter as ChoiceDropdownFilter
    from django.contrib.admin.filters import SimpleListFilter as SimpleDropdownFilter
else:
    # A dependency; its app must be in INSTALLED_APPS for its template (check pgjobs.E020).
    from django_admin_listfilter_dropdown.filters import (
        ChoiceDropdownFilter,
        SimpleDropdownFilter,
    )

# The queue filter reads the queues of this many newest jobs and dead letters (through the jobs'
# key, their ids time-ordered, and the dead letters' failed_at index), besides every queue with
# pending or running jobs.
RECENT_ROWS = 10_000
# Reserved for the library's own jobs (workflow runners): never a user's job name.
RESERVED_PREFIX = "pgjobs."


class ChoicesDropdown(ChoiceDropdownFilter):
    """A field's choices, as a select box once there are more than four."""


class _ExactValueFilter(SimpleDropdownFilter):
    """A filter whose choices come from somewhere cheap instead of a DISTINCT over the table."""

    def offered_values(self) -> list[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, value) for value in self.offered_values()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


def user_job_names() -> list[str]:
    """The registry's job names, without the library's workflow runners."""
    return [name for name in registry.names() if not name.startswith(RESERVED_PREFIX)]


class JobNameFilter(_ExactValueFilter):
    """Job names from the registry (of this process: the web server's)."""

    title = "job name"
    parameter_name = "job_name"

    def offered_values(self) -> list[str]:
        return user_job_names()


def queues_with_jobs() -> list[str]:
    """Every queue with pending or running jobs (a skip scan), and the queues of the newest
    RECENT_ROWS jobs and dead letters: bounded on any table size."""
    recent_jobs = Job.objects.using(conf.DATABASE).order_by("-id")[:RECENT_ROWS]
    recent_dead = FailedJob.objects.using(conf.DATABASE).order_by("-failed_at")[:RECENT_ROWS]
    names = set(dashboard.active_queues())
    for recent in (recent_jobs, recent_dead):
        model: Any = recent.model
        newest = model.objects.using(conf.DATABASE).filter(pk__in=recent.values("pk"))
        names |= set(newest.order_by().values_list("queue", flat=True).distinct())
    return sorted(names)


class QueueFilter(_ExactValueFilter):
    """Queues that have jobs: see queues_with_jobs()."""

    title = "queue"
    parameter_name = "queue"

    def offered_values(self) -> list[str]:
        return queues_with_jobs()


class RunnerJobFilter(SimpleDropdownFilter):
    """Workflow runner jobs (``pgjobs.workflow:<version>``) are hidden unless asked for: the
    workflows admin is where they are looked after."""

    title = "workflow runner jobs"
    parameter_name = "runner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("shown", "Shown"), ("only", "Only these")]

    def choices(self, changelist: Any) -> Iterator[Any]:
        choices = list(super().choices(changelist))
        choices[0]["display"] = "Hidden"  # the default ("All" in Django's words)
        yield from choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        runner = Q(job_name__startswith=WORKFLOW_JOB_PREFIX)
        if self.value() == "shown":
            return queryset
        if self.value() == "only":
            return queryset.filter(runner)
        return queryset.exclude(runner)


class HandlerFilter(SimpleDropdownFilter):
    """Jobs whose name no handler in this process's registry claims: the web server imports the
    same ``jobs`` modules as the workers, so these are usually jobs no worker will run (a typo,
    a removed handler, a name only another service's workers know)."""

    title = "handler"
    parameter_name = "handler"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("none", "No handler (in this process)"), ("known", "Has a handler")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        known = Q(job_name__in=registry.names())
        if self.value() == "none":
            return queryset.exclude(known)
        if self.value() == "known":
            return queryset.filter(known)
        return queryset
