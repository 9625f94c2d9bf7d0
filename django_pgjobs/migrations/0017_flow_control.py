"""Flow control (issue 15): queues with limits, partition keys, job timeouts.

- ``pgjobs_schedules.partition_key``: the partition key of a schedule's jobs.
- ``pgjobs_queues``: one row per queue that has limits or is paused (models.queues.Queue).
- ``pgjobs_job_queue``: ``partition_key``, ``timeout`` and ``seq`` (enqueue order, from the
  sequence ``pgjobs_job_seq``), and two indexes for the flow-controlled claim.
- ``pgjobs_queue_starts``: the rate limits' ledger, one row per claim of a rate-limited queue
  (and key), read over the queue's sliding window (models.queues.QueueStart).
- ``pgjobs_queue_load()``: jobs running per queue and key, and starts within the rate window,
  counted with a snapshot of its own (see queries.flow for why).
- ``pgjobs_pause(queue)`` / ``pgjobs_resume(queue)``; a trigger wakes idle workers of a queue
  whose row changed, so a resume or a raised limit starts jobs at once.

Like 0016, the job table is changed without stopping a busy queue (this migration is not
atomic): columns are added without a rewrite (the sequence default is set in a second step, so
existing rows keep NULL) under ``lock_timeout`` with retries (0014's ``_alter``), the CHECK is
added ``NOT VALID`` and validated afterwards, and the indexes are built ``CONCURRENTLY``.
"""

from __future__ import annotations

import datetime
import importlib
import time
from typing import Any, ClassVar

import django.db.models.functions.datetime
from django.db import OperationalError, migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

import django_pgjobs.models.fields
import django_pgjobs.models.jobs

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")

_TIMEOUT_CHECK = "pgjobs_job_timeout_positive"

FUNCTIONS = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_queue_load(
    queues text[], worker text, finishing_ids uuid[], finishing_tokens uuid[], at timestamptz
)
RETURNS TABLE (queue text, partition_key text, running bigint, running_here bigint,
               recent_starts bigint)
-- VOLATILE and SQL: never inlined, so its query runs with a snapshot of its own, taken when
-- it is called. The claim calls it after taking its queues' locks: it then counts every job
-- that claims of those queues committed while this one waited (the claim's own snapshot,
-- taken before the wait, would miss them).
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.queue, t.partition_key, sum(t.running)::bigint, sum(t.here)::bigint,
           sum(t.starts)::bigint
    FROM (
        SELECT j.queue, j.partition_key, count(*) AS running,
               count(*) FILTER (WHERE j.locked_by = $2) AS here, 0 AS starts
        FROM {schema}.pgjobs_job_queue AS j
        WHERE j.status = 'running' AND j.queue = ANY($1)
          -- Attempts the same statement completes (complete_and_claim): their slots are free
          -- once it commits, and it commits with the claim. Matched with their lease tokens,
          -- so a job another attempt holds now is still counted.
          AND (j.id, j.lease_token) NOT IN (SELECT * FROM unnest($3, $4))
        GROUP BY j.queue, j.partition_key
        UNION ALL
        SELECT s.queue, s.partition_key, 0, 0, sum(s.jobs)
        FROM {schema}.pgjobs_queue_starts AS s
        JOIN {schema}.pgjobs_queues AS q ON q.name = s.queue
        -- The window ends at ``at``: when the claim got its locks, the time its starts are
        -- stamped with, not its transaction's start (which may be long before the wait).
        WHERE s.queue = ANY($1) AND s.started_at > $5 - q.rate_period
        GROUP BY s.queue, s.partition_key
    ) AS t
    GROUP BY t.queue, t.partition_key
$$;

COMMENT ON FUNCTION {schema}.pgjobs_queue_load(text[], text, uuid[], uuid[], timestamptz)
IS 'django-pgjobs: jobs running and recent starts per queue and partition key (the claim''s).';

CREATE OR REPLACE FUNCTION {schema}.pgjobs_pause(queue text) RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    -- True if this paused it (false: it was paused already).
    WITH paused AS (
        INSERT INTO {schema}.pgjobs_queues AS q (name, paused, paused_at, updated_at)
        VALUES ($1, true, now(), now())
        ON CONFLICT (name) DO UPDATE SET paused = true, paused_at = now(), updated_at = now()
        WHERE NOT q.paused
        RETURNING 1
    )
    SELECT count(*) > 0 FROM paused
$$;

COMMENT ON FUNCTION {schema}.pgjobs_pause(text)
IS 'django-pgjobs: the queue accepts jobs and starts none until pgjobs_resume().';

CREATE OR REPLACE FUNCTION {schema}.pgjobs_resume(queue text) RETURNS boolean
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    -- True if this resumed it (false: it was not paused).
    WITH resumed AS (
        UPDATE {schema}.pgjobs_queues SET paused = false, paused_at = NULL, updated_at = now()
        WHERE name = $1 AND paused
        RETURNING 1
    )
    SELECT count(*) > 0 FROM resumed
$$;

COMMENT ON FUNCTION {schema}.pgjobs_resume(text)
IS 'django-pgjobs: the paused queue starts jobs again.';

CREATE OR REPLACE FUNCTION {schema}.pgjobs_queue_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- A resumed queue or a raised limit may have due jobs that idle workers are not polling
    -- for: wake them (delivered at commit, never on rollback).
    PERFORM pg_notify('pgjobs', NEW.name);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS pgjobs_queue_changed ON {schema}.pgjobs_queues;
CREATE TRIGGER pgjobs_queue_changed
    -- Not for key_cursor, which every claim of a partitioned queue moves.
    AFTER INSERT OR UPDATE OF name, paused, concurrency, worker_concurrency, rate_limit,
        rate_period, partition_concurrency, partition_rate_limit, fair, timeout
    ON {schema}.pgjobs_queues
    FOR EACH ROW EXECUTE FUNCTION {schema}.pgjobs_queue_changed();
"""

DROP_FUNCTIONS = """
DROP TRIGGER IF EXISTS pgjobs_queue_changed ON {schema}.pgjobs_queues;
DROP FUNCTION IF EXISTS {schema}.pgjobs_queue_changed();
DROP FUNCTION IF EXISTS {schema}.pgjobs_resume(text);
DROP FUNCTION IF EXISTS {schema}.pgjobs_pause(text);
DROP FUNCTION IF EXISTS {schema}.pgjobs_queue_load(text[], text, uuid[], uuid[], timestamptz);
"""


def _timeout_check(schema_editor: BaseDatabaseSchemaEditor) -> bool | None:
    """Whether the timeout CHECK is validated (None: not there yet)."""
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = %s "
            "AND conrelid = to_regclass('pgjobs_job_queue')",
            [_TIMEOUT_CHECK],
        )
        row = cur.fetchone()
        return None if row is None else bool(row[0])


def add_columns(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute("CREATE SEQUENCE IF NOT EXISTS pgjobs_job_seq", params=None)
    clauses = [
        "ADD COLUMN IF NOT EXISTS partition_key text NULL",
        "ADD COLUMN IF NOT EXISTS timeout interval NULL",
        # No default here: a volatile default would rewrite every existing row.
        "ADD COLUMN IF NOT EXISTS seq bigint NULL",
    ]
    if _timeout_check(schema_editor) is None:
        clauses.append(
            f"ADD CONSTRAINT {_TIMEOUT_CHECK} CHECK (timeout IS NULL OR "
            "(timeout > interval '0' AND timeout <= interval '366 days')) NOT VALID"
        )
    _0014._alter(schema_editor, "pgjobs_job_queue", clauses, migration="0017")
    _0014._alter(
        schema_editor,
        "pgjobs_job_queue",
        ["ALTER COLUMN seq SET DEFAULT nextval('pgjobs_job_seq'::regclass)"],
        migration="0017",
    )
    schema_editor.execute("ALTER SEQUENCE pgjobs_job_seq OWNED BY pgjobs_job_queue.seq", None)


def drop_columns(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _0014._alter(
        schema_editor,
        "pgjobs_job_queue",
        [
            f"DROP CONSTRAINT IF EXISTS {_TIMEOUT_CHECK}",
            "DROP COLUMN IF EXISTS partition_key",
            "DROP COLUMN IF EXISTS timeout",
            "DROP COLUMN IF EXISTS seq",  # drops the sequence it owns
        ],
        migration="0017",
    )


def validate(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if _timeout_check(schema_editor) is False:
        schema_editor.execute(
            f"ALTER TABLE pgjobs_job_queue VALIDATE CONSTRAINT {_TIMEOUT_CHECK}", params=None
        )


# The two indexes: built and dropped CONCURRENTLY, so writes go on meanwhile.
_INDEXES = {
    "pgjobs_job_running": "(queue, partition_key) WHERE status = 'running'",
    "pgjobs_job_partition_claim": (
        "(queue, partition_key, priority DESC, scheduled_for, seq NULLS FIRST) "
        "WHERE status = 'pending'"
    ),
}


def _concurrently(
    schema_editor: BaseDatabaseSchemaEditor,
    statement: str,
    *,
    migration: str = "0017",
    table: str = "pgjobs_job_queue",
    indexes: tuple[str, ...] = tuple(_INDEXES),
) -> None:
    """Run ``statement`` (an index of ``table`` built or dropped CONCURRENTLY) as 0014's
    ``_alter`` runs an ALTER: it waits for transactions that hold the table (a producer's open
    ``atomic()``) at most ``LOCK_TIMEOUT`` a try, pauses, tries again, and after ``LOCK_TRIES``
    names them. A build that gave up leaves an invalid index: those of ``indexes`` are dropped
    before the next try. (Migration 0021 uses it too.)

    ``CONCURRENTLY`` cannot run in a transaction, so ``lock_timeout`` is a session setting
    here. Through a connection pooler (its backend pid is not the one the client was told) the
    setting could stay on a server session another client gets next: there the statement runs
    without it, waiting as long as it must (a concurrent build blocks no reads or writes)."""
    connection = schema_editor.connection
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        if cur.fetchone()[0] != connection.connection.info.backend_pid:
            cur.execute(statement)
            return
    pause = _0014.FIRST_PAUSE_SECONDS
    for attempt in range(1, _0014.LOCK_TRIES + 1):
        with connection.cursor() as cur:
            cur.execute("SELECT current_setting('lock_timeout')")
            previous = cur.fetchone()[0]
            cur.execute("SELECT set_config('lock_timeout', %s, false)", [_0014.LOCK_TIMEOUT])
            try:
                # A build that gave up (here or in an earlier run) leaves an invalid index, which
                # IF NOT EXISTS would take as built: each try drops it first, under the same
                # lock_timeout (its wait failing fails the try, as the statement's would).
                _drop_invalid_indexes(schema_editor, indexes)
                cur.execute(statement)
                return
            except OperationalError as error:
                if getattr(error.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
                    raise
                if attempt == _0014.LOCK_TRIES:
                    # A build, once built, also waits for older snapshots (a drop does not).
                    older = (
                        ". Other transactions of this database that a build CONCURRENTLY waits "
                        "for, even if they never touched the table: "
                        f"{_0014._older_transactions(schema_editor, table)}"
                        if statement.lstrip().upper().startswith("CREATE")
                        else ""
                    )
                    raise RuntimeError(
                        f"Migration pgjobs {migration} could not lock table {table} to change "
                        f"it: {_0014.LOCK_TRIES} tries waited {_0014.LOCK_TIMEOUT} each (never "
                        "longer, so workers and producers went on). Sessions holding the table: "
                        f"{_0014._holders(schema_editor, table)}{older}. Commit or end these "
                        "transactions (pg_terminate_backend(pid) ends one), or run migrate when "
                        "the queue is quieter; then run migrate again: what is done already is "
                        "kept."
                    ) from error
            finally:
                cur.execute("SELECT set_config('lock_timeout', %s, false)", [previous])
        time.sleep(pause)
        pause *= 2


def _drop_invalid_indexes(schema_editor: BaseDatabaseSchemaEditor, names: tuple[str, ...]) -> None:
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE NOT i.indisvalid AND c.relname = ANY(%s) "
            # Not one another session is building now (a second migrate at the same time): its
            # drop would wait for that build, then drop the index it made valid.
            "AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index AS p "
            "WHERE p.index_relid = i.indexrelid)",
            [list(names)],
        )
        for (name,) in cur.fetchall():
            cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def create_indexes(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for name, definition in _INDEXES.items():
        _concurrently(
            schema_editor,
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON pgjobs_job_queue {definition}",
        )


def drop_indexes(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    for name in _INDEXES:
        _concurrently(schema_editor, f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def create_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def drop_functions(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute(DROP_FUNCTIONS.format(schema=_0002._schema(schema_editor)), params=None)


def _positive(field: str) -> models.Q:
    return models.Q((f"{field}__isnull", True), (f"{field}__gte", 1), _connector="OR")


def _in_range(field: str) -> models.Q:
    return models.Q(
        (f"{field}__gte", datetime.datetime(2, 1, 1, 0, 0, tzinfo=datetime.UTC)),
        (f"{field}__lt", datetime.datetime(9000, 1, 1, 0, 0, tzinfo=datetime.UTC)),
    )


class Migration(migrations.Migration):
    # Not atomic: the ALTERs wait under lock_timeout in transactions of their own, and the
    # indexes are built CONCURRENTLY (see above). The steps that wait for the job table come
    # last, so migrating back meets them first: if one gives up, nothing else was undone and
    # migrate can simply be run again (each of them skips what is done).
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0016_attempt_history")]
    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="Queue",
            fields=[
                ("name", models.CharField(max_length=200, primary_key=True, serialize=False)),
                (
                    "paused",
                    models.BooleanField(
                        db_default=models.Value(False),
                        default=False,
                        help_text="Accepts jobs, starts none.",
                    ),
                ),
                (
                    "concurrency",
                    models.IntegerField(
                        blank=True,
                        help_text="At most this many running at once, across all workers.",
                        null=True,
                    ),
                ),
                (
                    "worker_concurrency",
                    models.IntegerField(
                        blank=True,
                        help_text="At most this many running at once in one worker process.",
                        null=True,
                    ),
                ),
                (
                    "rate_limit",
                    models.IntegerField(
                        blank=True,
                        help_text="At most this many starts in any window of rate period.",
                        null=True,
                    ),
                ),
                (
                    "rate_period",
                    models.DurationField(
                        db_default=models.Value(datetime.timedelta(seconds=1)),
                        default=datetime.timedelta(seconds=1),
                        help_text="The sliding window of the rate limits.",
                    ),
                ),
                (
                    "partition_concurrency",
                    models.IntegerField(
                        blank=True,
                        help_text="At most this many running at once per partition key (1: "
                        "one at a time, in order).",
                        null=True,
                    ),
                ),
                (
                    "partition_rate_limit",
                    models.IntegerField(
                        blank=True,
                        help_text="At most this many starts per partition key in any window "
                        "of rate period.",
                        null=True,
                    ),
                ),
                (
                    "fair",
                    models.BooleanField(
                        db_default=models.Value(False),
                        default=False,
                        help_text="Take turns between partition keys instead of oldest first.",
                    ),
                ),
                (
                    "timeout",
                    models.DurationField(
                        blank=True,
                        help_text="A job running longer fails with a timeout (unless the job "
                        "or its handler says otherwise).",
                        null=True,
                    ),
                ),
                (
                    "declared",
                    django_pgjobs.models.fields.StoredJSONField(
                        blank=True, editable=False, null=True
                    ),
                ),
                (
                    "overridden",
                    models.BooleanField(
                        db_default=models.Value(False), default=False, editable=False
                    ),
                ),
                ("paused_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("key_cursor", models.TextField(blank=True, editable=False, null=True)),
                (
                    "updated_at",
                    models.DateTimeField(
                        db_default=django.db.models.functions.datetime.Now(), editable=False
                    ),
                ),
            ],
            options={"db_table": "pgjobs_queues", "ordering": ("name",)},
        ),
        migrations.AddConstraint(
            model_name="queue",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    _positive("concurrency"),
                    _positive("worker_concurrency"),
                    _positive("rate_limit"),
                    _positive("partition_concurrency"),
                    _positive("partition_rate_limit"),
                ),
                name="pgjobs_queue_limits_positive",
            ),
        ),
        migrations.AddConstraint(
            model_name="queue",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("rate_period__gt", datetime.timedelta(0)),
                    ("rate_period__lte", datetime.timedelta(days=1)),
                    models.Q(
                        ("timeout__isnull", True),
                        models.Q(
                            ("timeout__gt", datetime.timedelta(0)),
                            ("timeout__lte", datetime.timedelta(days=366)),
                        ),
                        _connector="OR",
                    ),
                ),
                name="pgjobs_queue_durations_positive",
            ),
        ),
        migrations.AddConstraint(
            model_name="queue",
            constraint=models.CheckConstraint(
                condition=models.Q(("name", ""), _negated=True), name="pgjobs_queue_name_not_empty"
            ),
        ),
        migrations.AddConstraint(
            model_name="queue",
            constraint=models.CheckConstraint(
                condition=_in_range("paused_at"), name="pgjobs_queue_paused_at_range"
            ),
        ),
        migrations.AddConstraint(
            model_name="queue",
            constraint=models.CheckConstraint(
                condition=_in_range("updated_at"), name="pgjobs_queue_updated_at_range"
            ),
        ),
        migrations.CreateModel(
            name="QueueStart",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue", models.TextField()),
                ("partition_key", models.TextField(blank=True, null=True)),
                (
                    "started_at",
                    models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
                ),
                ("jobs", models.IntegerField()),
            ],
            options={
                "db_table": "pgjobs_queue_starts",
                "indexes": [
                    models.Index(fields=["queue", "started_at"], name="pgjobs_queue_starts_window")
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("jobs__gt", 0)), name="pgjobs_start_jobs"
                    ),
                    models.CheckConstraint(
                        condition=_in_range("started_at"),
                        name="pgjobs_queue_start_started_at_range",
                    ),
                ],
            },
        ),
        migrations.AddField(
            model_name="schedule",
            name="partition_key",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="job",
                    name="partition_key",
                    field=models.TextField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="job",
                    name="seq",
                    field=models.BigIntegerField(
                        blank=True,
                        db_default=django_pgjobs.models.jobs.NextJobSeq(),
                        editable=False,
                        null=True,
                    ),
                ),
                migrations.AddField(
                    model_name="job",
                    name="timeout",
                    field=models.DurationField(blank=True, null=True),
                ),
                migrations.AddConstraint(
                    model_name="job",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            ("timeout__isnull", True),
                            models.Q(
                                ("timeout__gt", datetime.timedelta(0)),
                                ("timeout__lte", datetime.timedelta(days=366)),
                            ),
                            _connector="OR",
                        ),
                        name=_TIMEOUT_CHECK,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(add_columns, drop_columns)],
        ),
        migrations.RunPython(validate, migrations.RunPython.noop),
        migrations.RunPython(create_functions, drop_functions),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        models.F("queue"),
                        models.F("partition_key"),
                        condition=models.Q(("status", "running")),
                        name="pgjobs_job_running",
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        models.F("queue"),
                        models.F("partition_key"),
                        models.OrderBy(models.F("priority"), descending=True),
                        models.F("scheduled_for"),
                        models.OrderBy(models.F("seq"), nulls_first=True),
                        condition=models.Q(("status", "pending")),
                        name="pgjobs_job_partition_claim",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(create_indexes, drop_indexes)],
        ),
    ]
