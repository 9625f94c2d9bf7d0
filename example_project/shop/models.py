from __future__ import annotations

from django.db import models


class Customer(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by the send-welcome-email job once the mail is out, so a retried job does not send twice.
    welcomed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class ImportBatch(models.Model):
    """A file of rows imported in the background by the import-rows job."""

    name = models.CharField(max_length=200)
    rows = models.PositiveIntegerField()
    # Rows done so far; the job resumes from here when an attempt is retried.
    imported = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.name} ({self.imported}/{self.rows})"

    @property
    def is_done(self) -> bool:
        return self.imported >= self.rows
