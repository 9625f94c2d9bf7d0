"""Drop ``pgjobs_job_next_due`` (scheduled_for, of pending jobs), so that the claim's plan does not
depend on the table's statistics (issue 17).

When the table was last analyzed holding no pending job (a table of finished rows before a burst),
PostgreSQL expects one pending row. For the claim it then preferred this index, the smallest on
pending jobs, to the claim's own: it read every due job in it and sorted them, 5,000 entries for
a claim of 10 (1,000,000 on a backlog of that size), until autovacuum analyzed the table again.
Without it, the claim's order is only ever an index's order (``pgjobs_job_claim``, or
``pgjobs_job_queue_claim`` for one queue), and a claim reads as many entries as it takes. Its two
other readers walk the claim's index per priority instead (``queries.base.pending_priorities``),
and every enqueue writes one index entry fewer.

Dropped ``CONCURRENTLY`` with 0017's waits, so a busy queue is never stopped behind it;
migrating back builds it again the same way. Either step skips what is done.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0017 = importlib.import_module("django_pgjobs.migrations.0017_flow_control")

NAME = "pgjobs_job_next_due"
TABLE = "pgjobs_job_queue"


def _drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _0017._concurrently(
        schema_editor,
        f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}",
        migration="0023",
        table=TABLE,
        indexes=(NAME,),
    )


def _build(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _0017._concurrently(
        schema_editor,
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME} ON {TABLE} (scheduled_for) "
        "WHERE status = 'pending'",
        migration="0023",
        table=TABLE,
        indexes=(NAME,),
    )


class Migration(migrations.Migration):
    # Not atomic: the index is dropped CONCURRENTLY, waiting under lock_timeout (see 0017).
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0022_worker_unrenewed")]
    operations: ClassVar[list[Any]] = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveIndex(model_name="job", name=NAME)],
            database_operations=[migrations.RunPython(_drop, _build)],
        ),
    ]
