"""The flow-controlled claim counts what it needs, not the whole queue (issue 15).

0017's ``pgjobs_queue_load()`` counts running jobs and rate-window starts for every partition key
of a queue: with 100,000 keys started within a day's window, one claim took 0.3-0.4 s, and eight
at once passed the worker's 2 s ``lock_timeout``. The claim now calls:

- ``pgjobs_queue_counts()``: per limited queue, the queue's running jobs, this worker's running
  jobs, and its starts in the rate window, each only if the queue has that limit, and each read
  only up to the limit (a count at or past it leaves no room either way);
- ``pgjobs_key_counts()``: the same per partition key, for each key the claim's bounded key walk
  reaches (and the queue's jobs without a key), up to the key's limits.

Both are VOLATILE SQL functions like ``pgjobs_queue_load()`` (kept: "why is this job not
running?" reads it): each call runs with a snapshot of its own, taken after the claim holds its
queues' locks, so the counts stay exact (see queries.flow). Two indexes serve them:
``pgjobs_queue_starts_key`` (queue, partition_key, started_at) reads one key's window, and
``pgjobs_job_running_worker`` (locked_by, queue) of running jobs reads one worker's jobs of a
queue (``worker_concurrency``) instead of all the queue's running jobs.

Built and dropped ``CONCURRENTLY`` with 0017's waits (``lock_timeout`` a try, retries, then the
sessions holding the table are named), so a busy queue is never stopped behind this migration
(which is not atomic); the job table's index comes last, so migrating back meets its wait first,
before anything is undone. Each step skips what is done, so ``migrate`` can be run again.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0017 = importlib.import_module("django_pgjobs.migrations.0017_flow_control")

# Running jobs of the queue (and key), less the attempts the same statement completes
# (complete_and_claim: their slots are free once it commits, and it commits with the claim;
# matched with their lease tokens, so a job another attempt holds now is still counted).
_RUNNING = """SELECT 1 FROM {schema}.pgjobs_job_queue AS j
         WHERE j.status = 'running' AND j.queue = $1 AND {which}
           AND (j.id, j.lease_token) NOT IN (SELECT * FROM unnest($3, $4))"""

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION {{schema}}.pgjobs_queue_counts(
    queue text, worker text, finishing_ids uuid[], finishing_tokens uuid[], at timestamptz,
    running_upto integer, here_upto integer, starts_upto integer
)
RETURNS TABLE (running bigint, running_here bigint, recent_starts bigint)
-- One row, always: ROWS tells the planner so (its default, 1,000, multiplied through the
-- claim's key walk made the plan's cost pass jit_above_cost, and JIT compiling took seconds).
ROWS 1
-- VOLATILE and SQL: never inlined, so its query runs with a snapshot of its own, taken when it
-- is called (after the claim holds the queue's lock: it sees the claims that committed while
-- this one waited). Each count stops at its *_upto rows (NULL: the queue has no such limit, and
-- nothing is read): a count at the limit leaves no room, as a larger one would. A start row
-- holds at least one job (CHECK pgjobs_start_jobs), so ``starts_upto`` rows sum to the limit
-- or more. Index: pgjobs_job_running, pgjobs_job_running_worker, pgjobs_queue_starts_window.
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT
        (SELECT count(*) FROM (
            {_RUNNING.format(schema="{schema}", which="true")}
            LIMIT coalesce($6, 0)) AS r),
        (SELECT count(*) FROM (
            {_RUNNING.format(schema="{schema}", which="j.locked_by = $2")}
            LIMIT coalesce($7, 0)) AS r),
        (SELECT coalesce(sum(s.jobs), 0)::bigint FROM (
            SELECT s.jobs FROM {{schema}}.pgjobs_queue_starts AS s
            -- The window ends at ``at``: when the claim got its locks, the time its starts are
            -- stamped with, not its transaction's start (which may be long before the wait).
            WHERE s.queue = $1 AND s.started_at > $5 - (
                SELECT q.rate_period FROM {{schema}}.pgjobs_queues AS q WHERE q.name = $1)
            LIMIT coalesce($8, 0)) AS s)
$$;

COMMENT ON FUNCTION {{schema}}.pgjobs_queue_counts(
    text, text, uuid[], uuid[], timestamptz, integer, integer, integer)
IS 'django-pgjobs: a limited queue''s running jobs (all, and a worker''s) and recent starts, '
   'each up to its limit (the claim''s).';

CREATE OR REPLACE FUNCTION {{schema}}.pgjobs_key_counts(
    queue text, partition_key text, finishing_ids uuid[], finishing_tokens uuid[],
    at timestamptz, running_upto integer, starts_upto integer
)
RETURNS TABLE (running bigint, recent_starts bigint)
ROWS 1
-- As pgjobs_queue_counts(), for one partition key of the queue (NULL: its jobs without a key).
-- Each branch's one-time filter ($2 IS NULL or not) leaves one of them unread. Index:
-- pgjobs_job_running and pgjobs_queue_starts_key, one key's rows.
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT
        (SELECT count(*) FROM (
            {_RUNNING.format(schema="{schema}", which="j.partition_key = $2")}
            UNION ALL
            {_RUNNING.format(schema="{schema}", which="$2 IS NULL AND j.partition_key IS NULL")}
            LIMIT coalesce($6, 0)) AS r),
        (SELECT coalesce(sum(s.jobs), 0)::bigint FROM (
            SELECT s.jobs FROM {{schema}}.pgjobs_queue_starts AS s
            WHERE s.queue = $1 AND s.partition_key = $2 AND s.started_at > $5 - (
                SELECT q.rate_period FROM {{schema}}.pgjobs_queues AS q WHERE q.name = $1)
            UNION ALL
            SELECT s.jobs FROM {{schema}}.pgjobs_queue_starts AS s
            WHERE $2 IS NULL AND s.queue = $1 AND s.partition_key IS NULL
              AND s.started_at > $5 - (
                  SELECT q.rate_period FROM {{schema}}.pgjobs_queues AS q WHERE q.name = $1)
            LIMIT coalesce($7, 0)) AS s)
$$;

COMMENT ON FUNCTION {{schema}}.pgjobs_key_counts(
    text, text, uuid[], uuid[], timestamptz, integer, integer)
IS 'django-pgjobs: one partition key''s running jobs and recent starts, each up to its limit '
   '(the claim''s).';
"""

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS {schema}.pgjobs_key_counts(
    text, text, uuid[], uuid[], timestamptz, integer, integer);
DROP FUNCTION IF EXISTS {schema}.pgjobs_queue_counts(
    text, text, uuid[], uuid[], timestamptz, integer, integer, integer);
"""

# (table, index name, definition); the job table's last (see the module's docstring).
_INDEXES = (
    ("pgjobs_queue_starts", "pgjobs_queue_starts_key", "(queue, partition_key, started_at)"),
    (
        "pgjobs_job_queue",
        "pgjobs_job_running_worker",
        "(locked_by, queue) WHERE status = 'running'",
    ),
)


def create_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def drop_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP_FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def _index_steps(table: str, name: str, definition: str) -> migrations.RunPython:
    def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        _0017._concurrently(
            schema_editor,
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {definition}",
            migration="0021",
            table=table,
            indexes=(name,),
        )

    def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        _0017._concurrently(
            schema_editor,
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
            migration="0021",
            table=table,
            indexes=(name,),
        )

    return migrations.RunPython(create, drop)


class Migration(migrations.Migration):
    # Not atomic: the indexes are built CONCURRENTLY, waiting under lock_timeout (see above).
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0020_job_trace_context")]
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(create_functions, drop_functions),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="queuestart",
                    index=models.Index(
                        fields=["queue", "partition_key", "started_at"],
                        name="pgjobs_queue_starts_key",
                    ),
                ),
            ],
            database_operations=[_index_steps(*_INDEXES[0])],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        models.F("locked_by"),
                        models.F("queue"),
                        condition=models.Q(("status", "running")),
                        name="pgjobs_job_running_worker",
                    ),
                ),
            ],
            database_operations=[_index_steps(*_INDEXES[1])],
        ),
    ]
