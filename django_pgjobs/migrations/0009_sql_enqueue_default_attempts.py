"""``pgjobs_enqueue()`` without ``max_attempts`` takes the table's column default, which
``migrate`` sets from ``PGJOBS["MAX_ATTEMPTS"]`` (``django_pgjobs.jobs.options``), instead of a
hard-coded 3: a job enqueued from SQL gets the attempts a job enqueued from Python gets.

Without the argument the column is left out of the INSERT, so the table's default applies. Like
the functions of 0002, it pins ``search_path`` and names our tables with their schema.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")

SIGNATURE = "{schema}.pgjobs_enqueue(text, jsonb, text, integer, timestamptz, integer, text)"

# CREATE OR REPLACE, never DROP: grants an operator made on the function survive, and so do SQL
# functions whose bodies call it.
ENQUEUE_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_enqueue(
    job_name text,
    payload jsonb DEFAULT '{{}}'::jsonb,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    scheduled_for timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    job_key text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    LOOP
        -- Without max_attempts the column is left out, so its default applies: the one migrate
        -- sets from PGJOBS["MAX_ATTEMPTS"].
        IF $6 IS NULL THEN
            INSERT INTO {schema}.pgjobs_job_queue
                (job_name, payload, queue, priority, scheduled_for, key)
            VALUES
                ($1, coalesce($2, '{{}}'::jsonb), coalesce($3, 'default'), coalesce($4, 0),
                 coalesce($5, now()), $7)
            ON CONFLICT (key) WHERE key IS NOT NULL AND status IN ('pending', 'running')
            DO NOTHING
            RETURNING id INTO new_id;
        ELSE
            INSERT INTO {schema}.pgjobs_job_queue
                (job_name, payload, queue, priority, scheduled_for, max_attempts, key)
            VALUES
                ($1, coalesce($2, '{{}}'::jsonb), coalesce($3, 'default'), coalesce($4, 0),
                 coalesce($5, now()), $6, $7)
            ON CONFLICT (key) WHERE key IS NOT NULL AND status IN ('pending', 'running')
            DO NOTHING
            RETURNING id INTO new_id;
        END IF;
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

COMMENT ON FUNCTION {signature}
IS 'Enqueue a django-pgjobs job from SQL; with job_key, returns the active job holding the key.';
"""


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _0002._schema(schema_editor)
    signature = SIGNATURE.format(schema=schema)
    schema_editor.execute(ENQUEUE_FUNCTION.format(schema=schema, signature=signature))


def restore(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(_0002.ENQUEUE_FUNCTION.format(schema=_0002._schema(schema_editor)))


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0008_workflow_functions")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create, restore)]
