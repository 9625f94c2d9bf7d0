"""``pgjobs_pending_again(ids)``: which of these jobs are pending and due now (issue 15).

A partitioned queue's claim walks its keys with the statement's snapshot, taken before it waited
for the queue's lock, and counts their running jobs after it. A key whose job left ``running``
meanwhile has a free slot by the counts; if that job went back to ``pending`` keeping its place
(handed back at a shutdown, or claimed ahead and given back), the snapshot has it running, not
among the key's due jobs, and the claim would start the job behind it. The claim asks this
function, once, about the jobs that left ``running`` while it waited, and leaves the keys of
those pending and due again to the next claim. Due: ``scheduled_for`` no later than the
transaction's start; a job retried or snoozed meanwhile is due after it, behind the key's due
jobs, and holds nothing back. VOLATILE, as 0021's functions: never inlined, and its
statement runs with a snapshot of its own, taken when it starts (after the lock); no row is
locked or written. Index: the primary key.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")

FUNCTIONS = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_pending_again(ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(ids) IS NULL OR cardinality(ids) = 0 THEN
        RETURN '{{}}';
    END IF;
    RETURN ARRAY(
        SELECT j.id FROM {schema}.pgjobs_job_queue AS j
        WHERE j.id = ANY(ids) AND j.status = 'pending' AND j.scheduled_for <= now()
    );
END;
$$;

COMMENT ON FUNCTION {schema}.pgjobs_pending_again(uuid[])
IS 'django-pgjobs: the jobs among ids that are pending and due now (a snapshot of its own).';
"""

DROP_FUNCTIONS = "DROP FUNCTION IF EXISTS {schema}.pgjobs_pending_again(uuid[]);"


def create_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def drop_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP_FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0028_sql_enqueue_empty_partition_key")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create_functions, drop_functions)]
