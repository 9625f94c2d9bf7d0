"""SQL-side API: wake workers on any insert, and ``pgjobs_enqueue()`` for triggers and procedures.

Both functions pin ``search_path`` to ``pg_catalog, pg_temp`` and name our tables with their
schema (the one the tables were migrated into), so a role that can create objects in ``public``
cannot shadow ``now()`` or the table and run code inside them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_notify_new_jobs() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- One notification per queue per statement (PostgreSQL folds duplicates within a
    -- transaction), delivered at commit: a bulk insert wakes workers once, a rollback never.
    PERFORM pg_notify('pgjobs', q.queue) FROM (SELECT DISTINCT queue FROM new_jobs) AS q;
    RETURN NULL;
END;
$$;

CREATE TRIGGER pgjobs_job_queue_notify
AFTER INSERT ON {schema}.pgjobs_job_queue
REFERENCING NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION {schema}.pgjobs_notify_new_jobs();
"""

ENQUEUE_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_enqueue(
    job_name text,
    payload jsonb DEFAULT '{{}}'::jsonb,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    scheduled_for timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT 3,
    job_key text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    LOOP
        INSERT INTO {schema}.pgjobs_job_queue
            (job_name, payload, queue, priority, scheduled_for, max_attempts, key)
        VALUES
            ($1, coalesce($2, '{{}}'::jsonb), coalesce($3, 'default'), coalesce($4, 0),
             coalesce($5, now()), coalesce($6, 3), $7)
        ON CONFLICT (key) WHERE key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING
        RETURNING id INTO new_id;
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        -- The key is held by an active job: enqueueing is idempotent, return that job. If it
        -- finished in between (nothing found), the key is free again: try the insert again.
        SELECT j.id INTO new_id FROM {schema}.pgjobs_job_queue AS j
        WHERE j.key = $7 AND j.status IN ('pending', 'running');
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION {schema}.pgjobs_enqueue(text, jsonb, text, integer, timestamptz, integer, text)
IS 'Enqueue a django-pgjobs job from SQL; with job_key, returns the active job holding the key.';
"""

DROP = """
DROP FUNCTION IF EXISTS
    {schema}.pgjobs_enqueue(text, jsonb, text, integer, timestamptz, integer, text);
DROP TRIGGER IF EXISTS pgjobs_job_queue_notify ON {schema}.pgjobs_job_queue;
DROP FUNCTION IF EXISTS {schema}.pgjobs_notify_new_jobs();
"""


def _schema(schema_editor: BaseDatabaseSchemaEditor) -> str:
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = 'pgjobs_job_queue'::regclass"
        )
        return str(schema_editor.quote_name(cur.fetchone()[0]))


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _schema(schema_editor)
    schema_editor.execute(NOTIFY_FUNCTION.format(schema=schema))
    schema_editor.execute(ENQUEUE_FUNCTION.format(schema=schema))


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP.format(schema=_schema(schema_editor)))


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0001_initial")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create, drop)]
