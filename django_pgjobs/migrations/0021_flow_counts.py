"""The flow-controlled claim counts what it needs, not the whole queue (issue 15).

0017's ``pgjobs_queue_load()`` counts running jobs and rate-window starts for every partition key
of a queue: with 100,000 keys started within a day's window, one claim took 0.3-0.4 s, and eight
at once passed the worker's 2 s ``lock_timeout``. The claim now calls:

- ``pgjobs_queue_counts()``: per limited queue, the queue's running jobs, this worker's running
  jobs, and its starts in the rate window, each only if the queue has that limit, and each read
  only up to the limit (a count at or past it leaves no room either way);
- ``pgjobs_key_counts()``: the same per partition key, for each key the claim's bounded key walk
  reaches (and the queue's jobs without a key), up to the key's limits.

Both are VOLATILE like ``pgjobs_queue_load()`` (kept: "why is this job not running?" reads it):
each of their statements runs with a snapshot of its own, taken after the claim holds its queues'
locks, so the counts stay exact (see queries.flow). PL/pgSQL, where 0017's is SQL: the key walk
calls ``pgjobs_key_counts()`` once a key, and PL/pgSQL keeps its plans for the session where an
SQL function plans its body again in every claim (a third of the cost per key, measured). Two indexes serve them:
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
# matched with their lease tokens, so a job another attempt holds now is still counted), up to
# ``{upto}``.
_RUNNING = """SELECT count(*) INTO {into} FROM (
            SELECT 1 FROM {{schema}}.pgjobs_job_queue AS j
            WHERE j.status = 'running' AND j.queue = $1{which}
              AND (j.id, j.lease_token) NOT IN (SELECT * FROM unnest($3, $4))
            LIMIT {upto}) AS r;"""

# Starts in the window ending at ``at`` ($5): when the claim got its locks, the time its starts
# are stamped with, not its transaction's start (which may be long before the wait). A start row
# holds at least one job (CHECK pgjobs_start_jobs): ``{upto}`` rows sum to the limit or more.
_STARTS = """SELECT coalesce(sum(s.jobs), 0) INTO recent_starts FROM (
            SELECT s.jobs FROM {{schema}}.pgjobs_queue_starts AS s
            WHERE s.queue = $1{which} AND s.started_at > $5 - (
                SELECT q.rate_period FROM {{schema}}.pgjobs_queues AS q WHERE q.name = $1)
            LIMIT {upto}) AS s;"""

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION {{schema}}.pgjobs_queue_counts(
    queue text, worker text, finishing_ids uuid[], finishing_tokens uuid[], at timestamptz,
    running_upto integer, here_upto integer, starts_upto integer
)
RETURNS TABLE (running bigint, running_here bigint, recent_starts bigint)
-- One row, always: ROWS tells the planner so (its default, 1,000, multiplied through the
-- claim's key walk made the plan's cost pass jit_above_cost, and JIT compiling took seconds).
ROWS 1
-- VOLATILE: never inlined, and each statement runs with a snapshot of its own, taken when it
-- starts (after the claim holds the queue's lock: it sees the claims that committed while this
-- one waited). PL/pgSQL, not SQL: its plans are kept for the session, where an SQL function's
-- are made again at each claim, and a count the queue has no limit for is not even started.
-- Each count stops at its *_upto rows (NULL: no such limit, nothing read): a count at the limit
-- leaves no room, as a larger one would. Index: pgjobs_job_running,
-- pgjobs_job_running_worker, pgjobs_queue_starts_window.
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    running := 0;
    running_here := 0;
    recent_starts := 0;
    IF running_upto IS NOT NULL THEN
        {_RUNNING.format(into="running", which="", upto="running_upto")}
    END IF;
    IF here_upto IS NOT NULL THEN
        {_RUNNING.format(into="running_here", which=" AND j.locked_by = $2", upto="here_upto")}
    END IF;
    IF starts_upto IS NOT NULL THEN
        {_STARTS.format(which="", upto="starts_upto")}
    END IF;
    RETURN NEXT;
END;
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
-- As pgjobs_queue_counts(), for one partition key of the queue (NULL: its jobs without a key),
-- called for each key the claim's walk reaches. Index: pgjobs_job_running and
-- pgjobs_queue_starts_key, one key's rows.
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    running := 0;
    recent_starts := 0;
    IF running_upto IS NOT NULL AND partition_key IS NOT NULL THEN
        {_RUNNING.format(into="running", which=" AND j.partition_key = $2", upto="running_upto")}
    ELSIF running_upto IS NOT NULL THEN
        {_RUNNING.format(into="running", which=" AND j.partition_key IS NULL", upto="running_upto")}
    END IF;
    IF starts_upto IS NOT NULL AND partition_key IS NOT NULL THEN
        {_STARTS.format(which=" AND s.partition_key = $2", upto="starts_upto")}
    ELSIF starts_upto IS NOT NULL THEN
        {_STARTS.format(which=" AND s.partition_key IS NULL", upto="starts_upto")}
    END IF;
    RETURN NEXT;
END;
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
