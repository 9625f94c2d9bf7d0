"""What the admin, the CLI and ``set_queue_limits()`` hold to, a plain SQL write of
``pgjobs_queues`` holds to as well (issue 15): the trigger ``pgjobs_queue_overridden`` (0024)
also

- refuses a rate period without a rate limit (SQLSTATE 23514, in the words the CLI uses): alone
  it limits nothing, and it was stored, marked the queue overridden, and shown nowhere. A write
  that removes a queue's last rate limit and leaves the period as it was (an operator's ``SET
  rate_limit = NULL``, or a worker's start when the settings drop the rate an operator's period
  was kept for) takes the default period with it, as ``pgjobs queue-limits --rate-limit none``
  does;
- stamps ``updated_at`` when an option or the declaration changes, as the library's own writes
  always did, so the admin's "Updated" says when the row last changed, whoever changed it.

Rows that already hold a rate period alone are given the default period first (it limited
nothing); the trigger recomputes their ``overridden``. ``pgjobs_queues`` is small and its writers'
transactions short: this migration is atomic. Reversing restores 0024's function.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0024 = importlib.import_module("django_pgjobs.migrations.0024_queue_overrides")

_ALONE = (
    "NEW.rate_limit IS NULL AND NEW.partition_rate_limit IS NULL "
    "AND NEW.rate_period IS DISTINCT FROM interval '1 second'"
)

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION {{schema}}.pgjobs_queue_overridden() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Not an object (NULL: the settings do not name the queue): no limits, not paused.
    d jsonb := CASE WHEN jsonb_typeof(NEW.declared) = 'object' THEN NEW.declared END;
BEGIN
    IF {_ALONE} THEN
        IF TG_OP = 'UPDATE' AND NEW.rate_period = OLD.rate_period
           AND (OLD.rate_limit IS NOT NULL OR OLD.partition_rate_limit IS NOT NULL) THEN
            -- The last rate limit removed: its window goes back to the default with it.
            NEW.rate_period := interval '1 second';
        ELSE
            RAISE EXCEPTION 'Queue %: a rate period needs a rate limit (rate_limit or '
                'partition_rate_limit): alone it limits nothing.', NEW.name
                USING ERRCODE = 'check_violation',
                      HINT = 'Set one, or leave rate_period at its default (1 second).';
        END IF;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.paused IS DISTINCT FROM OLD.paused THEN
        NEW.paused_at := CASE WHEN NEW.paused THEN coalesce(NEW.paused_at, now()) END;
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.declared, {", ".join(f"NEW.{c}" for c in _0024._DECLARED)})
            IS DISTINCT FROM (OLD.declared, {", ".join(f"OLD.{c}" for c in _0024._DECLARED)}) THEN
        NEW.updated_at := now();
    END IF;
    NEW.overridden := ({", ".join(f"NEW.{c}" for c in _0024._DECLARED)})
        IS DISTINCT FROM ({", ".join(_0024._DECLARED.values())});
    RETURN NEW;
END;
$$;

UPDATE {{schema}}.pgjobs_queues SET rate_period = interval '1 second'
WHERE rate_limit IS NULL AND partition_rate_limit IS NULL
  AND rate_period IS DISTINCT FROM interval '1 second';
"""


def create_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def restore_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _0024.create_functions(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0026_dead_letter_partition_key_and_timeout")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create_functions, restore_functions)]
