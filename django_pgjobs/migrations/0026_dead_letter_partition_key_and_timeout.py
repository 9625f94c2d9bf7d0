"""A dead letter keeps its job's ``partition_key`` and ``timeout`` (issue 15), so a requeued job
runs in its partition again, behind and never beside that key's other jobs, and with its own
timeout, not the default's.

Two NULL columns without a default on ``pgjobs_failed_jobs``: a catalog change, no row is
rewritten. Dead letters written before this migration have neither (a requeue gives them back
without a key, as before). The timeout has the job table's range check (over 0, at most 366
days), so a dead letter written by SQL with a timeout the queue would refuse is refused when it
is written, not when it is requeued. Added ``NOT VALID`` with the columns (every existing row
is NULL there) and validated in a statement of its own, which blocks no writer. Each step runs
under ``lock_timeout`` with retries (migration 0014's ``_alter``), so a busy queue is never
stopped behind it; this migration is not atomic. Each step skips what is done, so ``migrate``
can be run again. The reverse drops both columns (and the check with them).
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any, ClassVar

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")

_TABLE = "pgjobs_failed_jobs"
_CHECK = "pgjobs_failed_job_timeout_positive"
_RANGE = "timeout IS NULL OR (timeout > interval '0' AND timeout <= interval '366 days')"


def add(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = %s::regclass",
            [_CHECK, _TABLE],
        )
        checked = cur.fetchone() is not None
    clauses = [
        "ADD COLUMN IF NOT EXISTS partition_key text NULL",
        "ADD COLUMN IF NOT EXISTS timeout interval NULL",
    ]
    if not checked:
        clauses.append(f"ADD CONSTRAINT {_CHECK} CHECK ({_RANGE}) NOT VALID")
    _0014._alter(schema_editor, _TABLE, clauses, migration="0026")
    schema_editor.execute(f"ALTER TABLE {_TABLE} VALIDATE CONSTRAINT {_CHECK}", params=None)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    clauses = ["DROP COLUMN IF EXISTS partition_key", "DROP COLUMN IF EXISTS timeout"]
    _0014._alter(schema_editor, _TABLE, clauses, migration="0026")


class Migration(migrations.Migration):
    # Not atomic: the ALTERs wait under lock_timeout in transactions of their own (see above).
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0025_key_loads")]
    operations: ClassVar[list[Any]] = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="failedjob",
                    name="partition_key",
                    field=models.TextField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="failedjob",
                    name="timeout",
                    field=models.DurationField(blank=True, null=True),
                ),
                migrations.AddConstraint(
                    model_name="failedjob",
                    constraint=models.CheckConstraint(
                        condition=models.Q(timeout__isnull=True)
                        | models.Q(timeout__gt=timedelta(0), timeout__lte=timedelta(days=366)),
                        name=_CHECK,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(add, drop)],
        ),
    ]
