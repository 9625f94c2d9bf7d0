"""A partitioned queue's key counts in one call per claim, when they are few (issue 15).

Since 0021 the claim's key walk called ``pgjobs_key_counts()`` once for each key it reached, so
that a queue with 100,000 busy keys is never read whole. Each call costs about 20 us, and a claim
of 500 jobs from 1,000 keys walks them all: 20 ms of a 56 ms claim, measured on PostgreSQL 15.
``pgjobs_key_loads()`` reads the queue's keyed running jobs and its keyed starts in the rate
window once, after the claim holds the queue's lock (VOLATILE, as 0021's functions: each
statement runs with a snapshot taken when it starts), and gives the walk a ``jsonb`` object
``{key: [running, recent_starts]}`` to look each key up in. It reads at most ``bound`` rows of
each (the claim passes 16 rows a key of its room, at most its key walk's bound, and calls it only
when the queue has room): past that it returns NULL, and the walk calls ``pgjobs_key_counts()``
per key as before. A row of loads costs a few microseconds where a key's own count costs about 20.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")

FUNCTIONS = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_key_loads(
    queue text, finishing_ids uuid[], finishing_tokens uuid[], at timestamptz,
    counts_running boolean, counts_starts boolean, bound integer
)
RETURNS jsonb
-- VOLATILE: never inlined, and each statement runs with a snapshot of its own, taken when it
-- starts (after the claim holds the queue's lock). Running jobs less the attempts the same
-- statement completes (their slots are free once it commits, and it commits with the claim),
-- matched with their lease tokens. Index: pgjobs_job_running (queue, partition_key) of running
-- jobs, pgjobs_queue_starts_key. NULL: more than ``bound`` rows of either.
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    running_keys text[] := '{{}}';
    started text[] := '{{}}';
    started_jobs integer[] := '{{}}';
BEGIN
    IF counts_running THEN
        SELECT coalesce(array_agg(r.partition_key), '{{}}') INTO running_keys FROM (
            SELECT j.partition_key FROM {schema}.pgjobs_job_queue AS j
            WHERE j.status = 'running' AND j.queue = $1 AND j.partition_key IS NOT NULL
              AND (j.id, j.lease_token) NOT IN (SELECT * FROM unnest($2, $3))
            LIMIT bound + 1) AS r;
        IF cardinality(running_keys) > bound THEN
            RETURN NULL;
        END IF;
    END IF;
    IF counts_starts THEN
        SELECT coalesce(array_agg(s.partition_key), '{{}}'), coalesce(array_agg(s.jobs), '{{}}')
        INTO started, started_jobs FROM (
            SELECT s.partition_key, s.jobs FROM {schema}.pgjobs_queue_starts AS s
            WHERE s.queue = $1 AND s.partition_key IS NOT NULL AND s.started_at > $4 - (
                SELECT q.rate_period FROM {schema}.pgjobs_queues AS q WHERE q.name = $1)
            LIMIT bound + 1) AS s;
        IF cardinality(started) > bound THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN (
        SELECT coalesce(jsonb_object_agg(l.key, jsonb_build_array(l.running, l.starts)), '{{}}')
        FROM (
            SELECT u.key, sum(u.running) AS running, sum(u.starts) AS starts FROM (
                SELECT r.key, 1 AS running, 0 AS starts FROM unnest(running_keys) AS r(key)
                UNION ALL
                SELECT s.key, 0, s.jobs FROM unnest(started, started_jobs) AS s(key, jobs)
            ) AS u
            GROUP BY u.key
        ) AS l
    );
END;
$$;

COMMENT ON FUNCTION {schema}.pgjobs_key_loads(
    text, uuid[], uuid[], timestamptz, boolean, boolean, integer)
IS 'django-pgjobs: a partitioned queue''s running jobs and recent starts by key, as '
   '{{key: [running, starts]}}; NULL past ``bound`` rows (the claim then counts key by key).';
"""

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS {schema}.pgjobs_key_loads(
    text, uuid[], uuid[], timestamptz, boolean, boolean, integer);
"""


def create_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def drop_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP_FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0024_queue_overrides")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create_functions, drop_functions)]
