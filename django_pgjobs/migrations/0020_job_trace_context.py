"""The trace context a job carries from the code that enqueued it to its runs (issue 16): a
nullable ``trace_context jsonb`` on jobs and dead letters, the carrier OpenTelemetry's
propagator wrote (``{"traceparent": "...", "tracestate": "..."}`` with the default one).

Written only by an enqueue made inside a span (see :mod:`django_pgjobs.tracing`); NULL
everywhere else, which is what ``pgjobs_enqueue()`` and a plain INSERT leave, so neither
changes. A NULL column without a default is a catalog change, no row is rewritten: one
``ALTER TABLE`` per table under ``lock_timeout`` with retries (migration 0014's ``_alter``), so
a busy queue is never stopped behind it (this migration is not atomic). The reverse drops them
the same way. Each step skips what is done, so ``migrate`` can be run again.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

import django_pgjobs.models.fields

_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")

_TABLES = ("pgjobs_job_queue", "pgjobs_failed_jobs")


def add(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for table in _TABLES:
        clauses = ["ADD COLUMN IF NOT EXISTS trace_context jsonb NULL"]
        _0014._alter(schema_editor, table, clauses, migration="0020")


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for table in _TABLES:
        clauses = ["DROP COLUMN IF EXISTS trace_context"]
        _0014._alter(schema_editor, table, clauses, migration="0020")


class Migration(migrations.Migration):
    # Not atomic: the ALTERs wait under lock_timeout in transactions of their own (see above).
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0019_worker_handlers")]
    operations: ClassVar[list[Any]] = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="failedjob",
                    name="trace_context",
                    field=django_pgjobs.models.fields.StoredJSONField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="job",
                    name="trace_context",
                    field=django_pgjobs.models.fields.StoredJSONField(blank=True, null=True),
                ),
            ],
            database_operations=[migrations.RunPython(add, drop)],
        ),
    ]
