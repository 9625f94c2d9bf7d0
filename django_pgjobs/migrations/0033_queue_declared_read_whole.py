"""The trigger ``pgjobs_queue_overridden`` reads every declared option of a queue row, so a plain
SQL write of ``declared`` with a value of the wrong kind is refused when it is written (a
hardening review).

0024 and 0027 compared the row's options with the declared ones as two rows, which PostgreSQL
compares element by element and stops at the first that differs: ``{"rate_limit": 5,
"rate_period": "zz"}`` was stored (the rate limits differed before the period was read), and then
every write of the queues that reads it failed: ``pgjobs queues``, ``pause`` and ``resume`` (the
sync of the settings updates every row), the admin's page of the queue. Now the declared values
are read into one record first, each cast done, and a value that does not cast is refused
(SQLSTATE 23514, in words). ``pgjobs_queues`` is small and its writers' transactions short: this
migration is atomic. Reversing restores 0027's function.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0024 = importlib.import_module("django_pgjobs.migrations.0024_queue_overrides")
_0027 = importlib.import_module("django_pgjobs.migrations.0027_queue_row_rules")

_NEW = ", ".join(f"NEW.{c}" for c in _0024._DECLARED)
_OLD = ", ".join(f"OLD.{c}" for c in _0024._DECLARED)
_WANT = ", ".join(f"want.{c}" for c in _0024._DECLARED)
_READ = ", ".join(f"{value} AS {column}" for column, value in _0024._DECLARED.items())
# The options given as true/false; the others are numbers (counts and seconds).
_FLAGS = ("paused", "fair")
_NUMBERS = ", ".join(f"'{column}'" for column in _0024._DECLARED if column not in _FLAGS)

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION {{schema}}.pgjobs_queue_overridden() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Not an object (NULL: the settings do not name the queue): no limits, not paused.
    d jsonb := CASE WHEN jsonb_typeof(NEW.declared) = 'object' THEN NEW.declared END;
    want record;
BEGIN
    -- Every declared option read and cast here, before any comparison (which stops at the
    -- first difference and would leave a bad value for a later reader to fail on), and each of
    -- the JSON kind the library writes: "60" casts to a number here, but Python reads a str.
    BEGIN
        SELECT {_READ} INTO want;
        IF EXISTS (
            SELECT 1 FROM jsonb_each(d) AS o(key, value)
            WHERE jsonb_typeof(o.value) <> 'null' AND jsonb_typeof(o.value) <> CASE
                WHEN o.key IN ({", ".join(f"'{flag}'" for flag in _FLAGS)}) THEN 'boolean'
                WHEN o.key IN ({_NUMBERS}) THEN 'number'
                ELSE jsonb_typeof(o.value) END
        ) THEN
            RAISE invalid_parameter_value USING MESSAGE = 'a str or other JSON where the '
                'option takes a number (its limits and seconds) or true or false';
        END IF;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION 'Queue %: declared holds an option of the wrong kind (%).', NEW.name,
            SQLERRM
            USING ERRCODE = 'check_violation',
                  HINT = 'declared is what PGJOBS["QUEUES"] says: numbers for the limits and '
                      'seconds, true or false for paused and fair. Workers write it at start.';
    END;
    IF {_0027._ALONE} THEN
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
    IF TG_OP = 'UPDATE' AND (NEW.declared, {_NEW}) IS DISTINCT FROM (OLD.declared, {_OLD}) THEN
        NEW.updated_at := now();
    END IF;
    NEW.overridden := ({_NEW}) IS DISTINCT FROM ({_WANT});
    RETURN NEW;
END;
$$;
"""


def create_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def restore_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _0027.create_functions(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0032_workflow_foreign_keys_unindexed")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create_functions, restore_functions)]
