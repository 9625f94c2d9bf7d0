"""``pgjobs_job_created`` (created_at, every row) becomes ``pgjobs_job_pending_created``
(created_at of pending jobs due before they were inserted), and the job lists' default order is
newest first by id (issue 17).

No state change of a job can be HOT (``status`` is in the partial indexes' predicates), so an
index of every row took a new entry at the claim and again at the completion: 2 of the 13 entries
a job wrote, for readers that need neither. The newest-first lists (the admin's, ``list_jobs``,
``pgjobs list``) read the key instead: ids are time-ordered (``django_pgjobs.jobs.ids``,
migration 0030), so ``ORDER BY id DESC`` is newest first, to the millisecond. The dashboard's one
other use, pending jobs created in its window but due before it, is served by the partial index,
which takes an entry for a pending job due before its insert (most jobs ``enqueue()`` writes in a
transaction, due at its start) and none when a job is claimed or completed. A drain of 60,000
no-op jobs: the server's CPU per job 6-13% lower, 3-13% more jobs a second (benchmarks/README.md,
the fifth round).

Built and dropped ``CONCURRENTLY`` with 0017's waits (the new index first, so the dashboard is
never without one), so a busy queue is never stopped behind it; migrating back builds the old
index again the same way. Either step skips what is done.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0017 = importlib.import_module("django_pgjobs.migrations.0017_flow_control")

TABLE = "pgjobs_job_queue"
OLD = "pgjobs_job_created"
NEW = "pgjobs_job_pending_created"
_DEFINITIONS = {
    OLD: "(created_at)",
    NEW: "(created_at) WHERE status = 'pending' AND scheduled_for < created_at",
}


def _valid(schema_editor: BaseDatabaseSchemaEditor, name: str) -> bool:
    """Whether index ``name`` exists and is valid (a build stopped midway leaves it invalid)."""
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
        row = cur.fetchone()
    return row is not None and bool(row[0])


def _run(schema_editor: BaseDatabaseSchemaEditor, statement: str, name: str) -> None:
    _0017._concurrently(schema_editor, statement, migration="0031", table=TABLE, indexes=(name,))


def _replace(schema_editor: BaseDatabaseSchemaEditor, *, build: str, drop: str) -> None:
    """Build ``build``, and drop ``drop`` only once ``build`` is there and valid: the dashboard
    is never left without an index that serves it. (An invalid leftover of a build stopped
    midway, which ``IF NOT EXISTS`` would take as built, is dropped before each try: 0017.)"""
    _run(
        schema_editor,
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {build} ON {TABLE} {_DEFINITIONS[build]}",
        build,
    )
    if not _valid(schema_editor, build):  # another session's build, say, not finished yet
        raise RuntimeError(
            f"Migration pgjobs 0031 found index {build} not valid after building it (a build "
            f"that has not finished, perhaps another migrate's); {drop} is kept. Run migrate "
            "again once no other migrate runs: what is done already is kept."
        )
    _run(schema_editor, f"DROP INDEX CONCURRENTLY IF EXISTS {drop}", drop)


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _replace(schema_editor, build=NEW, drop=OLD)


def backwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _replace(schema_editor, build=OLD, drop=NEW)


class Migration(migrations.Migration):
    # Not atomic: the indexes are built and dropped CONCURRENTLY, waiting under lock_timeout.
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0030_time_ordered_job_ids")]
    operations: ClassVar[list[Any]] = [
        migrations.AlterModelOptions(name="job", options={"ordering": ("-id",)}),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="job", name=OLD),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(
                            status="pending", scheduled_for__lt=models.F("created_at")
                        ),
                        fields=["created_at"],
                        name=NEW,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
