"""The workflow_id foreign keys of steps, messages and events lose the two indexes Django gave
each of them (the column, and its ``varchar_pattern_ops`` copy for ``LIKE``) (issue 17).

Each of the three tables has an index that leads with ``workflow_id`` already
(``pgjobs_workflow_step_unique``, ``pgjobs_message_inbox``, ``pgjobs_workflow_event_key``), which
serves the lookups by workflow and the cascade when a workflow is pruned; nothing reads them
with ``LIKE``. So a checkpoint wrote four index entries where two do, each of them the workflow's
id again. The same goes for every message and event.

Dropped ``CONCURRENTLY``, waiting under 0017's ``lock_timeout`` like 0031, so running workflows
are never stopped behind the migration; migrating back builds them again the same way. Either
way, what is done already is skipped.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0017 = importlib.import_module("django_pgjobs.migrations.0017_flow_control")
_0031 = importlib.import_module("django_pgjobs.migrations.0031_created_index_pending_only")

# Table -> the names Django gave its two indexes of workflow_id (migration 0007).
INDEXES = {
    "pgjobs_workflow_steps": "pgjobs_workflow_steps_workflow_id_3c11f6ac",
    "pgjobs_workflow_messages": "pgjobs_workflow_messages_workflow_id_3221c10f",
    "pgjobs_workflow_events": "pgjobs_workflow_events_workflow_id_e2397188",
}


def _definitions(table: str) -> dict[str, str]:
    name = INDEXES[table]
    return {name: "(workflow_id)", f"{name}_like": "(workflow_id varchar_pattern_ops)"}


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for table in INDEXES:
        for name in _definitions(table):
            statement = f"DROP INDEX CONCURRENTLY IF EXISTS {name}"
            _0017._concurrently(schema_editor, statement, migration="0032", table=table, indexes=())


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for table in INDEXES:
        for name, columns in _definitions(table).items():
            statement = f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {columns}"
            # A build that gave up is left invalid: dropped before the next try.
            _0017._concurrently(
                schema_editor, statement, migration="0032", table=table, indexes=(name,)
            )
            if not _0031._valid(schema_editor, name):  # another migrate's build, say, unfinished
                raise RuntimeError(
                    f"Migration pgjobs 0032 found index {name} not valid after building it (a "
                    "build that has not finished, perhaps another migrate's). Run migrate again "
                    "once no other migrate runs: what is done already is kept."
                )


def _unindexed(related_name: str) -> models.ForeignKey[Any, Any]:
    return models.ForeignKey(
        db_column="workflow_id",
        db_index=False,
        on_delete=django.db.models.deletion.CASCADE,
        related_name=related_name,
        to="pgjobs.workflowexecution",
    )


class Migration(migrations.Migration):
    # Not atomic: the indexes are dropped and built CONCURRENTLY, waiting under lock_timeout.
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0031_created_index_pending_only")]
    operations: ClassVar[list[Any]] = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="workflowevent", name="workflow", field=_unindexed("+")
                ),
                migrations.AlterField(
                    model_name="workflowmessage", name="workflow", field=_unindexed("+")
                ),
                migrations.AlterField(
                    model_name="workflowstep", name="workflow", field=_unindexed("steps")
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
