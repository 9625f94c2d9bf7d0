"""Schedules: code and settings declarations synced here, and rows an operator made."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Now

from django_pgjobs.jobs.validation import (
    MAX_NAME_LENGTH,
    MAX_PRIORITY,
    MIN_PRIORITY,
    RESERVED_PREFIX,
)
from django_pgjobs.models.fields import StoredJSONField, times_in_range
from django_pgjobs.models.jobs import empty_object
from django_pgjobs.schedules.validation import (
    MAX_CATCH_UP_LIMIT,
    catch_up_limit_problem,
    declaration_problems,
    option_problems,
)


class CatchUp(models.TextChoices):
    SKIP = "skip", "Skip missed ticks"
    LATEST = "latest", "Run the latest missed tick once"
    ALL = "all", "Run all missed ticks (up to the limit)"


class ScheduleSource(models.TextChoices):
    CODE = "code", "Code (@cron / schedule())"
    SETTINGS = "settings", "Settings (PGJOBS['SCHEDULES'])"
    DATABASE = "database", "Database (admin or SQL)"


class Schedule(models.Model):
    """A recurring job. Code and settings declarations are synced here when a scheduler starts;
    rows created in the admin or with SQL live only here.

    ``next_run_at`` is the next tick to fire. A trigger clears it whenever the timing changes
    (expression, timezone, window) or the schedule is re-enabled, and schedulers recompute it
    from the database clock, so edits take effect without a restart.
    """

    name = models.CharField(max_length=MAX_NAME_LENGTH, unique=True)
    cron = models.CharField(
        max_length=200,
        help_text="5 cron fields (minute hour day month weekday), 6 with seconds first, an "
        "alias such as @daily, or an interval such as 'every 10 minutes'.",
    )
    job_name = models.CharField(max_length=MAX_NAME_LENGTH)
    payload = StoredJSONField(db_default=empty_object(), default=dict, blank=True)
    queue = models.CharField(max_length=MAX_NAME_LENGTH, null=True, blank=True)  # noqa: DJ001 - NULL: the job's default
    priority = models.SmallIntegerField(null=True, blank=True)
    # The partition key of the tick's job (see models.queues.Queue); NULL: the job's default.
    partition_key = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL means "none"; '' is a key
    timezone = models.CharField(max_length=64, db_default=Value("UTC"), default="UTC")
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(db_default=Value(True), default=True)
    catch_up = models.CharField(
        max_length=8, choices=CatchUp.choices, db_default=Value("skip"), default=CatchUp.SKIP
    )
    catch_up_limit = models.IntegerField(db_default=Value(10), default=10)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    source = models.CharField(
        max_length=8,
        choices=ScheduleSource.choices,
        db_default=Value("database"),
        default=ScheduleSource.DATABASE,
        editable=False,
    )
    # The code or settings declaration was removed; the row stays for its history.
    orphaned = models.BooleanField(db_default=Value(False), default=False, editable=False)
    created_at = models.DateTimeField(db_default=Now(), editable=False)
    updated_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        db_table = "pgjobs_schedules"
        ordering = ("name",)
        constraints = (
            models.CheckConstraint(
                condition=Q(end_at__isnull=True)
                | Q(start_at__isnull=True)
                | Q(end_at__gt=F("start_at")),
                name="pgjobs_schedule_window",
            ),
            models.CheckConstraint(
                condition=Q(catch_up__in=CatchUp.values), name="pgjobs_schedule_catch_up_valid"
            ),
            models.CheckConstraint(
                condition=Q(catch_up_limit__gte=1, catch_up_limit__lte=MAX_CATCH_UP_LIMIT),
                name="pgjobs_schedule_catch_up_limit",
            ),
            # The library's own jobs (a workflow's runner) are never a schedule's: a tick of
            # one would run a workflow beside its own job. Python refuses them too; this covers
            # SQL.
            models.CheckConstraint(
                condition=~Q(job_name__startswith=RESERVED_PREFIX),
                name="pgjobs_schedule_job_not_reserved",
            ),
            models.CheckConstraint(
                condition=Q(priority__isnull=True)
                | Q(priority__gte=MIN_PRIORITY, priority__lte=MAX_PRIORITY),
                name="pgjobs_schedule_priority_range",
            ),
            *times_in_range(
                "pgjobs_schedule",
                "start_at",
                "end_at",
                "last_run_at",
                "next_run_at",
                "created_at",
                "updated_at",
            ),
        )
        indexes = (
            models.Index(
                fields=("next_run_at",), condition=Q(enabled=True), name="pgjobs_schedule_due"
            ),
        )

    def __str__(self) -> str:
        return self.name

    # Written only by schedulers. A form or ``save()`` after a read must never bring back an
    # old next tick (which would fire it again), so saves of existing rows leave them alone.
    SCHEDULER_FIELDS = frozenset({"next_run_at", "last_run_at"})

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding and kwargs.get("update_fields") is None:
            # Nor a column that was never read (the admin defers a large payload): saving it
            # would load it only to write the same value back.
            unread = self.get_deferred_fields()
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key
                and f.name not in self.SCHEDULER_FIELDS
                and f.attname not in unread
            ]
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.source != ScheduleSource.DATABASE:
            # Declared in code or settings: checked there (pgjobs.E010); here only the
            # operator's `enabled` can change, and that needs no validation.
            return
        problems = option_problems(
            name=self.name,
            queue=self.queue,
            priority=self.priority,
            partition_key=self.partition_key,
        )
        # A payload the form never read (the admin defers one too large to edit) is not being
        # changed: re-checking it would load megabytes, and would stop an operator disabling a
        # schedule SQL wrote with a payload over MAX_PAYLOAD_BYTES.
        unread = "payload" in self.get_deferred_fields()
        found = declaration_problems(
            cron=self.cron,
            timezone=self.timezone,
            start=self.start_at,
            end=self.end_at,
            job_name=self.job_name,
            payload={} if unread else self.payload,
            partition_key=self.partition_key,
        )
        if unread:
            # The handler's partition key callable was asked with {}, not the real payload.
            found.pop("partition_key", None)
        problems |= found
        limit_problem = catch_up_limit_problem(self.catch_up_limit)
        if limit_problem is not None:
            problems["catch_up_limit"] = limit_problem
        if problems:
            raise ValidationError(problems)
