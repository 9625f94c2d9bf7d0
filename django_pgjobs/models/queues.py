"""Queues: the limits every worker's claim obeys, and whether a queue is paused.

A queue needs no row: jobs name their queue and run. A row (from ``PGJOBS["QUEUES"]``, the admin,
the CLI, ``pause_queue()`` or SQL) adds flow control, read by each claim in the same statement
that takes the jobs (:mod:`django_pgjobs.queries.flow`), so a change applies to the next claim of
every worker without a restart.

Settings values (the limits, and ``paused``) are synced into the row when a worker starts
(``declared`` keeps them); an operator's change, in the admin, the CLI, Python or SQL, overrides
an option until it is reset: ``overridden`` is true while an option differs from ``declared``,
kept so by a trigger (migration 0024) whoever writes the row.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Now

from django_pgjobs.jobs.validation import MAX_NAME_LENGTH
from django_pgjobs.models.fields import StoredJSONField, times_in_range

# The limits a queue row can carry: settings keys, model fields and CLI options all use these
# names. (``paused`` can be declared in the settings too, but is changed with pause and resume.)
LIMIT_FIELDS = (
    "concurrency",
    "worker_concurrency",
    "rate_limit",
    "rate_period",
    "partition_concurrency",
    "partition_rate_limit",
    "fair",
    "timeout",
)


def _positive(field: str) -> Q:
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__gte": 1})


class QueueQuerySet(models.QuerySet["Queue"]):
    def paused(self) -> QueueQuerySet:
        return self.filter(paused=True)


class Queue(models.Model):
    name = models.CharField(max_length=MAX_NAME_LENGTH, primary_key=True)
    paused = models.BooleanField(
        db_default=Value(False), default=False, help_text="Accepts jobs, starts none."
    )
    concurrency = models.IntegerField(
        null=True, blank=True, help_text="At most this many running at once, across all workers."
    )
    worker_concurrency = models.IntegerField(
        null=True, blank=True, help_text="At most this many running at once in one worker process."
    )
    rate_limit = models.IntegerField(
        null=True, blank=True, help_text="At most this many starts in any window of rate period."
    )
    rate_period = models.DurationField(
        db_default=Value(timedelta(seconds=1)),
        default=timedelta(seconds=1),
        help_text="The sliding window of the rate limits.",
    )
    partition_concurrency = models.IntegerField(
        null=True,
        blank=True,
        help_text="At most this many running at once per partition key (1: one at a time, in "
        "order).",
    )
    partition_rate_limit = models.IntegerField(
        null=True,
        blank=True,
        help_text="At most this many starts per partition key in any window of rate period.",
    )
    fair = models.BooleanField(
        db_default=Value(False),
        default=False,
        help_text="Take turns between partition keys instead of oldest first.",
    )
    timeout = models.DurationField(
        null=True,
        blank=True,
        help_text="A job running longer fails with a timeout (unless the job or its handler "
        "says otherwise).",
    )
    # The values PGJOBS["QUEUES"] declares for this queue, as last synced (None: not declared).
    declared = StoredJSONField(null=True, blank=True, editable=False)
    # An option (paused, a limit) differs from ``declared``: an operator's, which a worker's
    # start keeps. Derived from the row by the trigger pgjobs_queue_overridden (0024).
    overridden = models.BooleanField(db_default=Value(False), default=False, editable=False)
    paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A partitioned queue's claims walk a bounded number of its keys, starting after the last
    # key the previous claim walked (queries.flow): every key gets its turn however many.
    key_cursor = models.TextField(null=True, blank=True, editable=False)  # noqa: DJ001 - NULL: from the first key
    updated_at = models.DateTimeField(db_default=Now(), editable=False)

    objects = QueueQuerySet.as_manager()

    class Meta:
        db_table = "pgjobs_queues"
        ordering = ("name",)
        constraints = (
            models.CheckConstraint(
                condition=_positive("concurrency")
                & _positive("worker_concurrency")
                & _positive("rate_limit")
                & _positive("partition_concurrency")
                & _positive("partition_rate_limit"),
                name="pgjobs_queue_limits_positive",
            ),
            models.CheckConstraint(
                # Upper bounds too: SQL can write a row, and a window of 300,000 years would
                # overflow the claim's time arithmetic for every queue it serves.
                condition=Q(rate_period__gt=timedelta(0), rate_period__lte=timedelta(days=1))
                & (
                    Q(timeout__isnull=True)
                    | Q(timeout__gt=timedelta(0), timeout__lte=timedelta(days=366))
                ),
                name="pgjobs_queue_durations_positive",
            ),
            models.CheckConstraint(condition=~Q(name=""), name="pgjobs_queue_name_not_empty"),
            *times_in_range("pgjobs_queue", "paused_at", "updated_at"),
        )

    def __str__(self) -> str:
        return self.name

    @property
    def limited(self) -> bool:
        """Claims of this queue are counted (and serialized): it has a limit or takes turns."""
        return any(
            getattr(self, name) is not None
            for name in (
                "concurrency",
                "worker_concurrency",
                "rate_limit",
                "partition_concurrency",
                "partition_rate_limit",
            )
        ) or bool(self.fair)


class QueueStart(models.Model):
    """The rate limits' ledger: how many jobs one claim started in a rate-limited queue (and,
    with a per-key rate, key). Appended by the claim, read over the queue's sliding window by
    the next claims, pruned with finished jobs. A table of the ORM's only so Django's test
    flush empties it with the rest."""

    id = models.BigAutoField(primary_key=True)
    queue = models.TextField()
    partition_key = models.TextField(null=True, blank=True)  # noqa: DJ001 - NULL: the queue's rate
    started_at = models.DateTimeField(db_default=Now())
    jobs = models.IntegerField()

    class Meta:
        db_table = "pgjobs_queue_starts"
        constraints = (
            models.CheckConstraint(condition=Q(jobs__gt=0), name="pgjobs_start_jobs"),
            *times_in_range("pgjobs_queue_start", "started_at"),
        )
        indexes = (
            # Serves the rate window (pgjobs_queue_counts, pgjobs_queue_load) and its pruning.
            models.Index(fields=("queue", "started_at"), name="pgjobs_queue_starts_window"),
            # Serves one key's rate window (pgjobs_key_counts): the claim reads the keys it
            # walks, not every key started in the window.
            models.Index(
                fields=("queue", "partition_key", "started_at"), name="pgjobs_queue_starts_key"
            ),
        )

    def __str__(self) -> str:
        return f"{self.queue} {self.partition_key or ''} {self.jobs} at {self.started_at}"
