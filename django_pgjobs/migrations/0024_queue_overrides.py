"""A queue's ``overridden`` is kept by PostgreSQL, for every writer (issue 15).

``overridden`` was written only by ``set_queue_limits()`` and ``reset_queue_limits()``: a plain
``UPDATE pgjobs_queues SET concurrency = 2`` left it false, and the next worker's start put the
settings' value back, though the docs promise an operator's change made in SQL holds until it is
reset. The trigger ``pgjobs_queue_overridden`` (BEFORE INSERT, and BEFORE UPDATE of an option or
of ``declared``) now derives it from the row itself: a queue is overridden exactly when one of its
options (``paused`` and the limits) differs from what ``declared`` (the settings' values, last
synced; none declared: no limits, not paused) gives it. So every writer is first class, the
library's statements and an operator's SQL alike, with no marker to set: a worker's start writes
the declared values (not overridden), an operator's different value is an override, and setting
the settings' value again ends it. ``paused`` is an option like the limits now (it can be declared
in ``PGJOBS["QUEUES"]``): a pause or resume that differs from the settings is an override too. The
trigger also stamps ``paused_at`` when ``paused`` changes, so ``UPDATE ... SET paused = true`` is
a pause like ``pgjobs_pause()``.

No marker for "the declaration is writing": a transaction-local one would have to be set in the
same statement as the write (autocommit runs each statement in its own transaction), and a session
one could stay on a pooled server connection another client gets next.

The claim's ``key_cursor`` updates name no option: the trigger does not fire for them. Existing
rows are recomputed once (``SET declared = declared`` fires it). ``pgjobs_queues`` is small and
its writers' transactions short: this migration is atomic.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")

# The options, and each one's value as ``declared`` (a JSON object) gives it: the same casts as
# queries.queues uses to write a declaration, so a row the settings wrote is never overridden.
_DECLARED = {
    "paused": "coalesce((d ->> 'paused')::boolean, false)",
    "concurrency": "(d ->> 'concurrency')::int",
    "worker_concurrency": "(d ->> 'worker_concurrency')::int",
    "rate_limit": "(d ->> 'rate_limit')::int",
    "rate_period": (
        "coalesce(make_interval(secs => (d ->> 'rate_period')::float8), interval '1 second')"
    ),
    "partition_concurrency": "(d ->> 'partition_concurrency')::int",
    "partition_rate_limit": "(d ->> 'partition_rate_limit')::int",
    "fair": "coalesce((d ->> 'fair')::boolean, false)",
    "timeout": "make_interval(secs => (d ->> 'timeout')::float8)",
}

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION {{schema}}.pgjobs_queue_overridden() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Not an object (NULL: the settings do not name the queue): no limits, not paused.
    d jsonb := CASE WHEN jsonb_typeof(NEW.declared) = 'object' THEN NEW.declared END;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.paused IS DISTINCT FROM OLD.paused THEN
        NEW.paused_at := CASE WHEN NEW.paused THEN coalesce(NEW.paused_at, now()) END;
    END IF;
    NEW.overridden := ({", ".join(f"NEW.{c}" for c in _DECLARED)})
        IS DISTINCT FROM ({", ".join(_DECLARED.values())});
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION {{schema}}.pgjobs_queue_overridden()
IS 'django-pgjobs: a queue is overridden when an option differs from its declared value.';

DROP TRIGGER IF EXISTS pgjobs_queue_overridden ON {{schema}}.pgjobs_queues;
CREATE TRIGGER pgjobs_queue_overridden
    BEFORE INSERT OR UPDATE OF {", ".join(_DECLARED)}, declared, overridden
    ON {{schema}}.pgjobs_queues
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.pgjobs_queue_overridden();

UPDATE {{schema}}.pgjobs_queues SET declared = declared;
"""

DROP_FUNCTIONS = """
DROP TRIGGER IF EXISTS pgjobs_queue_overridden ON {schema}.pgjobs_queues;
DROP FUNCTION IF EXISTS {schema}.pgjobs_queue_overridden();
"""


def create_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def drop_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP_FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0023_drop_next_due")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create_functions, drop_functions)]
