"""Tables the test handlers write to, so tests can count what really ran."""

from __future__ import annotations

from django.db import models


class Run(models.Model):
    """One row per handler execution that reached its end."""

    job_id = models.UUIDField()
    label = models.CharField(max_length=100)
    attempt_seen = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.label} {self.job_id}"


class Order(models.Model):
    """Stands in for the user's data that a job is enqueued together with."""

    reference = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.reference
