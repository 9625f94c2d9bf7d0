"""Job names and keys starting with ``pgjobs.`` are the library's own (issue 13, items 3, 4, 8).

- ``pgjobs_enqueue()`` refuses a job name or a key starting with ``pgjobs.``, as ``enqueue()``
  does: a job posing as a workflow's runner (``pgjobs.workflow:<version>``) would run that
  workflow beside its own job.
- The library's keys move into that reserved space: a workflow's job is keyed
  ``pgjobs.workflow:<id>`` (was ``workflow:<id>``), a schedule's tick ``pgjobs.cron:<name>:<time>``
  (was ``cron:...``), so a client-chosen key can neither swallow a tick nor block a workflow id.
  Existing rows are rewritten (only rows the library wrote: a workflow job whose key names its
  own workflow, a tick whose key names a schedule of that job), and ``pgjobs_workflow_wake()``
  finds waiting workflows' jobs by the new key.
- A workflow's dead letter declares the workflow dead only when the workflow's own job is gone
  (not for a stray job under a workflow's name that the runner refused).
- Schedules: a CHECK refuses a reserved job name; ``catch_up_limit`` is at most 1000 (larger
  values are lowered to it).

A plain ``INSERT`` into ``pgjobs_job_queue`` is not checked: the library writes reserved names
itself, and a role that may insert rows may change any row anyway. The workflow runner refuses a
job that is not its workflow's own (its key), so such a row fails instead of running steps.

Like the functions of 0002, these pin ``search_path`` and name our tables with their schema.
Apply it when no old worker runs: an old worker looks for workflow jobs by the old key.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0008 = importlib.import_module("django_pgjobs.migrations.0008_workflow_functions")
_0009 = importlib.import_module("django_pgjobs.migrations.0009_sql_enqueue_default_attempts")

_LOOP = "BEGIN\n    LOOP\n"
_REFUSE_RESERVED = """BEGIN
    -- The library's own names and keys (a workflow's runner, a workflow's or a tick's key).
    IF starts_with($1, 'pgjobs.') THEN
        RAISE EXCEPTION 'The job name % starts with ''pgjobs.'', which is reserved for '
                        'django-pgjobs''s own jobs.', quote_literal($1)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Choose another job name.';
    END IF;
    IF starts_with($7, 'pgjobs.') THEN
        RAISE EXCEPTION 'The key % starts with ''pgjobs.'', which is reserved for '
                        'django-pgjobs''s own keys.', quote_literal($7)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Choose another key.';
    END IF;
    LOOP
"""
assert _0009.ENQUEUE_FUNCTION.count(_LOOP) == 1
ENQUEUE_FUNCTION = _0009.ENQUEUE_FUNCTION.replace(_LOOP, _REFUSE_RESERVED)

WORKFLOW_FUNCTIONS = """
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
            SELECT 'pgjobs.workflow:' || s.workflow_id FROM {schema}.pgjobs_workflow_steps AS s
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
    -- Not when the workflow still has its own job: the dead letter was a stray job under a
    -- workflow's name (the runner refuses those). The statement that buried the job deleted
    -- it, and this trigger runs after that statement, so it no longer sees the buried job.
    UPDATE {schema}.pgjobs_workflow_executions AS w
    SET status = 'dead', updated_at = now(), completed_at = now(),
        error = jsonb_build_object(
            'type', 'django_pgjobs.exceptions.WorkflowDead',
            'message', format('The workflow was moved to the dead letters after %s attempts.',
                              NEW.attempt),
            'args', jsonb_build_array(),
            'traceback', NEW.error)
    WHERE w.workflow_id = NEW.payload ->> 'workflow_id' AND w.status IN ('pending', 'running')
      AND NOT EXISTS (
          SELECT 1 FROM {schema}.pgjobs_job_queue AS j
          WHERE j.key = 'pgjobs.workflow:' || w.workflow_id
            AND j.status IN ('pending', 'running'));
    IF FOUND THEN
        PERFORM {schema}.pgjobs_workflow_wake('result:' || (NEW.payload ->> 'workflow_id'));
    END IF;
    RETURN NULL;
END;
$$;
"""

# Only the rows the library wrote: a workflow's job keyed for its own workflow, a tick keyed for
# a schedule of that job. A user's job that merely holds a key such as 'cron:x' keeps it.
MOVE_KEYS = """
UPDATE {schema}.pgjobs_job_queue SET key = 'pgjobs.' || key
WHERE key LIKE 'workflow:%' AND job_name LIKE 'pgjobs.workflow:%'
  AND key = 'workflow:' || (payload ->> 'workflow_id');
UPDATE {schema}.pgjobs_job_queue AS j SET key = 'pgjobs.' || j.key
WHERE j.key LIKE 'cron:%' AND EXISTS (
    SELECT 1 FROM {schema}.pgjobs_schedules AS s
    WHERE s.job_name = j.job_name AND starts_with(j.key, 'cron:' || s.name || ':'));
"""

RESTORE_KEYS = """
UPDATE {schema}.pgjobs_job_queue SET key = substr(key, 8)
WHERE key LIKE 'pgjobs.workflow:%' AND job_name LIKE 'pgjobs.workflow:%';
UPDATE {schema}.pgjobs_job_queue SET key = substr(key, 8) WHERE key LIKE 'pgjobs.cron:%';
"""


def refuse_reserved_schedules(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """The CHECK below cannot be added over a schedule that runs a reserved job: name them, so
    the operator deletes them (they could only run a workflow a second time)."""
    schedule = apps.get_model("pgjobs", "Schedule")
    alias = schema_editor.connection.alias
    found = list(
        schedule.objects.using(alias)
        .filter(job_name__startswith="pgjobs.")
        .values_list("name", "job_name")
    )
    if found:
        named = ", ".join(f"{name!r} (job {job!r})" for name, job in found)
        raise RuntimeError(
            f"Schedule(s) {named} run a job name starting with 'pgjobs.', which is reserved for "
            "django-pgjobs's own jobs and can no longer be scheduled. Delete them (in the admin "
            "or with SQL), then run migrate again."
        )
    schedule.objects.using(alias).filter(catch_up_limit__gt=1000).update(catch_up_limit=1000)


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _0002._schema(schema_editor)
    signature = _0009.SIGNATURE.format(schema=schema)
    # params=None: no client-side interpolation, so the % in the SQL stays as written.
    schema_editor.execute(ENQUEUE_FUNCTION.format(schema=schema, signature=signature), params=None)
    schema_editor.execute(WORKFLOW_FUNCTIONS.format(schema=schema), params=None)
    schema_editor.execute(MOVE_KEYS.format(schema=schema), params=None)


def restore(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _0002._schema(schema_editor)
    schema_editor.execute(RESTORE_KEYS.format(schema=schema), params=None)
    # 0008's text ends by creating the trigger, which stays: take only its functions.
    functions = _0008.WAKE_FUNCTION.split("CREATE TRIGGER")[0]
    schema_editor.execute(functions.format(schema=schema), params=None)
    _0009.create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0011_stored_json_fields")]
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(refuse_reserved_schedules, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="schedule", name="pgjobs_schedule_catch_up_limit"),
        migrations.AddConstraint(
            model_name="schedule",
            constraint=models.CheckConstraint(
                condition=models.Q(("catch_up_limit__gte", 1), ("catch_up_limit__lte", 1000)),
                name="pgjobs_schedule_catch_up_limit",
            ),
        ),
        migrations.AddConstraint(
            model_name="schedule",
            constraint=models.CheckConstraint(
                condition=models.Q(("job_name__startswith", "pgjobs."), _negated=True),
                name="pgjobs_schedule_job_not_reserved",
            ),
        ),
        migrations.RunPython(create, restore),
    ]
