"""SQL for workflows: the wake-up of waiting workflows, and dead workflows from dead letters.

``pgjobs_workflow_wake(key)`` is called by every statement that may end a wait (a message sent,
an event set, a workflow finished): it bumps ``wake_seq`` of the workflows waiting on ``key`` and
makes their suspended jobs due now. A waiter registers (inserts its waiting step) under a shared
advisory lock on the key and then looks for what it waits for; the wake-up takes the lock
exclusively and then finds waiters with a fresh snapshot. Either the waiter's look sees the
waker's data, or the waker sees the waiter: no wake-up is lost between the two.

Like the functions of 0002, both pin ``search_path`` and name our tables with their schema.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

WAKE_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_workflow_wake(waited_for text) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    woken integer;
BEGIN
    -- Outside waiters (WorkflowHandle.get_result, get_event) LISTEN for the key.
    PERFORM pg_notify('pgjobs_workflow', left(waited_for, 7000));
    PERFORM pg_advisory_xact_lock(hashtext('pgjobs_workflow_wake'), hashtext(waited_for));
    -- Each statement below reads a fresh snapshot, taken after the lock.
    UPDATE {schema}.pgjobs_workflow_executions AS w SET wake_seq = w.wake_seq + 1
    WHERE w.workflow_id IN (
        SELECT s.workflow_id FROM {schema}.pgjobs_workflow_steps AS s
        WHERE s.status = 'waiting' AND s.wait_key = waited_for
    );
    WITH due AS (
        UPDATE {schema}.pgjobs_job_queue AS j SET scheduled_for = now()
        WHERE j.key IN (
            SELECT 'workflow:' || s.workflow_id FROM {schema}.pgjobs_workflow_steps AS s
            WHERE s.status = 'waiting' AND s.wait_key = waited_for
        )
        AND j.status = 'pending' AND j.scheduled_for > now()
        RETURNING j.queue
    )
    SELECT count(pg_notify('pgjobs', q.queue)) INTO woken
    FROM (SELECT DISTINCT queue FROM due) AS q;
    RETURN woken;
END;
$$;

CREATE OR REPLACE FUNCTION {schema}.pgjobs_workflow_buried() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- A workflow's job reached the dead letters (it kept crashing its worker, or the runner
    -- itself kept failing): the workflow is dead, and whoever waits for its result hears so.
    UPDATE {schema}.pgjobs_workflow_executions
    SET status = 'dead', updated_at = now(), completed_at = now(),
        error = jsonb_build_object(
            'type', 'django_pgjobs.exceptions.WorkflowDead',
            'message', format('The workflow was moved to the dead letters after %s attempts.',
                              NEW.attempt),
            'args', jsonb_build_array(),
            'traceback', NEW.error)
    WHERE workflow_id = NEW.payload ->> 'workflow_id' AND status IN ('pending', 'running');
    IF FOUND THEN
        PERFORM {schema}.pgjobs_workflow_wake('result:' || (NEW.payload ->> 'workflow_id'));
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_failed_workflow
AFTER INSERT ON {schema}.pgjobs_failed_jobs
FOR EACH ROW WHEN (NEW.job_name LIKE 'pgjobs.workflow:%')
EXECUTE FUNCTION {schema}.pgjobs_workflow_buried();
"""

DROP = """
DROP TRIGGER IF EXISTS pgjobs_failed_workflow ON {schema}.pgjobs_failed_jobs;
DROP FUNCTION IF EXISTS {schema}.pgjobs_workflow_buried();
DROP FUNCTION IF EXISTS {schema}.pgjobs_workflow_wake(text);
"""


def _schema(schema_editor: BaseDatabaseSchemaEditor) -> str:
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = 'pgjobs_workflow_executions'::regclass"
        )
        return str(schema_editor.quote_name(cur.fetchone()[0]))


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # params=None: no client-side interpolation, so the % in the SQL stays as written.
    schema_editor.execute(WAKE_FUNCTION.format(schema=_schema(schema_editor)), params=None)


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP.format(schema=_schema(schema_editor)))


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0007_workflows")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create, drop)]
