"""What a job keeps of its attempts, for the Django Tasks backend and the admin (issue 14).

- ``error_history`` (jobs and dead letters): one entry per failed attempt, newest last, bounded
  (``queries.base.ERROR_HISTORY_LIMIT``); written by the statements that fail, rescue and bury.
- ``started_at`` (both): when the first attempt started; ``locked_at`` stays the latest's.
- ``result`` (jobs): the return value of a handler that keeps it (a task's ``return_value``).
- ``metadata`` (both): JSON the producer and the running task attach.

Added as migration 0014 adds its checks, so a busy queue is never stopped behind it (this
migration is not atomic): one ``ALTER TABLE`` per table adds its columns (constant defaults, so
no row is rewritten) and its ``started_at`` range CHECK ``NOT VALID``, under ``lock_timeout`` with
retries (0014's ``_alter``); then the CHECK is validated under a lock that lets writes go on. The
reverse drops them the same way. Each step skips what is done, so ``migrate`` can be run again.
"""

from __future__ import annotations

import datetime
import importlib
from typing import Any, ClassVar

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

import django_pgjobs.models.fields

_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")

_EARLIEST, _LATEST = _0014._EARLIEST_SQL, _0014._LATEST_SQL
_RANGE_CHECK = f"CHECK (started_at >= {_EARLIEST} AND started_at < {_LATEST})"
# table: (columns as ADD COLUMN clauses, the range CHECK's name)
_TABLES = {
    "pgjobs_job_queue": (
        (
            "started_at timestamptz NULL",
            "result jsonb NULL",
            "metadata jsonb NOT NULL DEFAULT '{}'::jsonb",
            "error_history jsonb NOT NULL DEFAULT '[]'::jsonb",
        ),
        "pgjobs_job_started_at_range",
    ),
    "pgjobs_failed_jobs": (
        (
            "started_at timestamptz NULL",
            "metadata jsonb NOT NULL DEFAULT '{}'::jsonb",
            "error_history jsonb NOT NULL DEFAULT '[]'::jsonb",
        ),
        "pgjobs_failed_job_started_at_range",
    ),
}


def _checks(schema_editor: BaseDatabaseSchemaEditor) -> dict[str, bool]:
    """The range CHECKs already present (name -> validated)."""
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT conname, convalidated FROM pg_constraint WHERE conname = ANY(%s) "
            "AND conrelid IN (SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)",
            [[check for _, check in _TABLES.values()], list(_TABLES)],
        )
        return dict(cur.fetchall())


def add(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    existing = _checks(schema_editor)
    for table, (columns, check) in _TABLES.items():
        clauses = [f"ADD COLUMN IF NOT EXISTS {column}" for column in columns]
        if check not in existing:
            clauses.append(f"ADD CONSTRAINT {check} {_RANGE_CHECK} NOT VALID")
        _0014._alter(schema_editor, table, clauses, migration="0016")


def validate(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for name, validated in _checks(schema_editor).items():
        table = next(t for t, (_, check) in _TABLES.items() if check == name)
        if not validated:
            schema_editor.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}", params=None)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for table, (columns, check) in _TABLES.items():
        clauses = [f"DROP CONSTRAINT IF EXISTS {check}"] + [
            f"DROP COLUMN IF EXISTS {column.split()[0]}" for column in columns
        ]
        _0014._alter(schema_editor, table, clauses, migration="0016")


class Migration(migrations.Migration):
    # Not atomic: the ALTERs wait under lock_timeout in transactions of their own (see above).
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0015_worker_instance_token")]
    operations: ClassVar[list[Any]] = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="failedjob",
                    name="error_history",
                    field=django_pgjobs.models.fields.StoredJSONField(
                        db_default=models.Value([], output_field=models.JSONField())
                    ),
                ),
                migrations.AddField(
                    model_name="failedjob",
                    name="metadata",
                    field=django_pgjobs.models.fields.StoredJSONField(
                        db_default=models.Value({}, output_field=models.JSONField())
                    ),
                ),
                migrations.AddField(
                    model_name="failedjob",
                    name="started_at",
                    field=models.DateTimeField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="job",
                    name="error_history",
                    field=django_pgjobs.models.fields.StoredJSONField(
                        db_default=models.Value([], output_field=models.JSONField())
                    ),
                ),
                migrations.AddField(
                    model_name="job",
                    name="metadata",
                    field=django_pgjobs.models.fields.StoredJSONField(
                        db_default=models.Value({}, output_field=models.JSONField())
                    ),
                ),
                migrations.AddField(
                    model_name="job",
                    name="result",
                    field=django_pgjobs.models.fields.StoredJSONField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="job",
                    name="started_at",
                    field=models.DateTimeField(blank=True, null=True),
                ),
                migrations.AddConstraint(
                    model_name="failedjob",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            (
                                "started_at__gte",
                                datetime.datetime(2, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                            (
                                "started_at__lt",
                                datetime.datetime(9000, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                        ),
                        name="pgjobs_failed_job_started_at_range",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="job",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            (
                                "started_at__gte",
                                datetime.datetime(2, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                            (
                                "started_at__lt",
                                datetime.datetime(9000, 1, 1, 0, 0, tzinfo=datetime.UTC),
                            ),
                        ),
                        name="pgjobs_job_started_at_range",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(add, drop)],
        ),
        migrations.RunPython(validate, migrations.RunPython.noop, atomic=False),
    ]
