"""Every stored time stays inside the range Python reads back (issue 13, items 1, 6, 8).

PostgreSQL stores ``infinity``, ``-infinity`` and years from 4713 BC to 294276 AD; Python's
``datetime`` ends at year 9999 and has no infinity. One row written by SQL with such a time
broke every reader: the worker's claim raised after it committed (the poison job and its
batch stayed running, and ``-infinity`` sorted first so it was claimed again after each
rescue), the dashboard, ``pgjobs status``/``list``/``schedules``, the admin lists, and the
scheduler (one schedule with ``end_at = 'infinity'`` stopped every schedule). Python refuses
such times already (``jobs.validation.check_time_range``: year 2 to year 9000); now the database
refuses them from SQL too, so no reader needs to guard:

- ``pgjobs_enqueue()`` refuses a ``scheduled_for`` outside the range with SQLSTATE 22023
  (``invalid_parameter_value``) and a message naming the value.
- A CHECK on every time column of every table (``<prefix>_<column>_range``, declared in the
  models' ``Meta.constraints`` with :func:`django_pgjobs.models.fields.times_in_range`) refuses
  a plain ``INSERT`` or ``UPDATE`` with SQLSTATE 23514 (``check_violation``). NULL passes.

How the CHECKs are added, so a large table stays usable (this migration is not atomic):

1. Existing rows are checked first, with plain reads (no lock that blocks writers). If any time
   is out of range the migration stops before changing anything and names the rows (up to ten
   per table): change or delete them (docs/howto/upgrade.md) and run ``migrate`` again. It does
   not repair them: an infinite ``scheduled_for`` may mean "never", and only the operator knows.
2. Each CHECK is added ``NOT VALID``: that takes the table's ACCESS EXCLUSIVE lock only for a
   catalog update, without reading the table, and refuses new bad rows from then on. One
   ``ALTER TABLE`` per table adds all of its CHECKs (one lock, not one per column), under
   ``lock_timeout`` (``LOCK_TIMEOUT``): a transaction holding the table (a producer's open
   ``atomic()`` that enqueued) makes the ALTER give up after that wait, so the enqueues, claims
   and heartbeats queued behind it go on; it is tried again after a pause, and after
   ``LOCK_TRIES`` the migration stops naming the sessions that hold the table. The reverse
   (dropping the CHECKs) is done the same way.
3. Each CHECK is validated (``VALIDATE CONSTRAINT``) in its own transaction: that reads the whole
   table under a SHARE UPDATE EXCLUSIVE lock, which lets inserts, updates and the claim go on.
   A plain ``ADD CONSTRAINT ... CHECK`` would have done that scan under ACCESS EXCLUSIVE,
   stopping every worker and producer for as long as the scan of the job queue takes.

A bad row written between steps 1 and 2 makes step 3 fail; the message then names it, as in
step 1. Steps 2 and 3 skip what is already done, so ``migrate`` can simply be run again.

The bounds are written out here, as a migration must be frozen; tests/test_times_in_range.py
checks that they are ``EARLIEST_TIME`` and ``LATEST_TIME`` of ``jobs.validation``.
"""

from __future__ import annotations

import importlib
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.db import IntegrityError, OperationalError, migrations, models, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0009 = importlib.import_module("django_pgjobs.migrations.0009_sql_enqueue_default_attempts")
_0012 = importlib.import_module("django_pgjobs.migrations.0012_reserved_names_and_keys")

EARLIEST_TIME = datetime(2, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
_EARLIEST_SQL = "'0002-01-01 00:00:00+00'::timestamptz"
_LATEST_SQL = "'9000-01-01 00:00:00+00'::timestamptz"
_RANGE = "0002-01-01 to 9000-01-01 (UTC)"

# model name: (table, constraint prefix, SQL naming a row, time columns)
TIMES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "job": (
        "pgjobs_job_queue",
        "pgjobs_job",
        "'id ' || id",
        ("created_at", "scheduled_for", "completed_at", "locked_at", "lease_expires_at"),
    ),
    "failedjob": (
        "pgjobs_failed_jobs",
        "pgjobs_failed_job",
        "'id ' || id",
        ("original_created_at", "failed_at"),
    ),
    "worker": (
        "pgjobs_workers",
        "pgjobs_worker",
        "'id ' || id",
        ("started_at", "last_heartbeat_at"),
    ),
    "schedule": (
        "pgjobs_schedules",
        "pgjobs_schedule",
        "'name ' || quote_literal(name)",
        ("start_at", "end_at", "last_run_at", "next_run_at", "created_at", "updated_at"),
    ),
    "workflowexecution": (
        "pgjobs_workflow_executions",
        "pgjobs_workflow",
        "'workflow_id ' || quote_literal(workflow_id)",
        ("created_at", "started_at", "updated_at", "completed_at"),
    ),
    "workflowstep": (
        "pgjobs_workflow_steps",
        "pgjobs_workflow_step",
        "'workflow_id ' || quote_literal(workflow_id) || ' step ' || step_index",
        ("wake_at", "started_at", "completed_at"),
    ),
    "workflowmessage": (
        "pgjobs_workflow_messages",
        "pgjobs_workflow_message",
        "'id ' || id",
        ("created_at",),
    ),
    "workflowevent": (
        "pgjobs_workflow_events",
        "pgjobs_workflow_event",
        "'id ' || id",
        ("updated_at",),
    ),
}


def _constraint(prefix: str, column: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=models.Q((f"{column}__gte", EARLIEST_TIME), (f"{column}__lt", LATEST_TIME)),
        name=f"{prefix}_{column}_range",
    )


CONSTRAINTS = [
    (model, _constraint(prefix, column))
    for model, (_table, prefix, _row, columns) in TIMES.items()
    for column in columns
]

_TABLE_OF = {constraint.name: TIMES[model][0] for model, constraint in CONSTRAINTS}


def _out_of_range(column: str) -> str:
    return f"NOT ({column} >= {_EARLIEST_SQL} AND {column} < {_LATEST_SQL})"


def rows_out_of_range(schema_editor: BaseDatabaseSchemaEditor) -> list[str]:
    """One line per table holding a time outside the range: its count and up to ten rows."""
    found: list[str] = []
    with schema_editor.connection.cursor() as cur:
        for table, _prefix, row, columns in TIMES.values():
            shown = ", ".join(
                f"CASE WHEN {_out_of_range(c)} THEN '{c} = ' || {c}::text END" for c in columns
            )
            cur.execute(
                f"SELECT {row}, concat_ws(', ', {shown}), count(*) OVER () FROM {table} "
                f"WHERE {' OR '.join(_out_of_range(c) for c in columns)} LIMIT 10"
            )
            rows = cur.fetchall()
            if rows:
                listed = "; ".join(f"{name}: {times}" for name, times, _ in rows)
                found.append(f"{table} ({rows[0][2]} row(s)): {listed}")
    return found


def refuse_rows_out_of_range(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    found = rows_out_of_range(schema_editor)
    if found:
        kept = len(_existing(schema_editor))
        changed = (
            f"The {kept} check(s) a previous run added NOT VALID are kept (they refuse new "
            "such rows); nothing else was changed."
            if kept
            else "Nothing was changed."
        )
        raise RuntimeError(
            f"Migration pgjobs 0014 cannot add its checks: these rows hold times outside "
            f"{_RANGE}, which Python cannot read back (they break the worker's claim, the "
            "admin and the pgjobs command):\n  "
            + "\n  ".join(found)
            + "\nChange or delete them with SQL (docs/howto/upgrade.md, 'Times in range'), "
            f"then run migrate again. {changed}"
        )


def _existing(schema_editor: BaseDatabaseSchemaEditor) -> dict[str, bool]:
    """The range CHECKs already present (name -> validated): a failed run is resumed."""
    names = [c.name for _, c in CONSTRAINTS]
    tables = sorted(set(_TABLE_OF.values()))
    with schema_editor.connection.cursor() as cur:
        # On our tables as the search_path finds them, as the ALTER TABLEs do.
        cur.execute(
            "SELECT conname, convalidated FROM pg_constraint WHERE conname = ANY(%s) "
            "AND conrelid IN (SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)",
            [names, tables],
        )
        return dict(cur.fetchall())


# Each table's ALTER waits at most this long for its ACCESS EXCLUSIVE lock, and is tried this
# many times, a pause between tries that doubles from the first. While the ALTER waits, every
# statement on the table (enqueue, claim, heartbeat) queues behind it: a short wait, given up,
# lets them go on; an unbounded one stops the queue for as long as the blocking transaction lasts.
LOCK_TIMEOUT = "2s"
LOCK_TRIES = 5
FIRST_PAUSE_SECONDS = 1.0


# A lock ``l`` on table %s (a relation's oid is unique only within its database).
_ON_TABLE = (
    "l.relation = to_regclass(%s) "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# Session ``a`` holds a lock on table %s.
_HOLDS_TABLE = (
    f"EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.pid = a.pid AND l.granted AND {_ON_TABLE})"
)


def _holders(schema_editor: BaseDatabaseSchemaEditor, table: str) -> str:
    """The other sessions holding a lock on ``table``, and the prepared transactions holding
    one (they have no session: ``pg_terminate_backend`` cannot end them): the ones the ALTER
    waited for."""
    sessions = _sessions(schema_editor, _HOLDS_TABLE, [table])
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT p.gid, quote_literal(p.gid), p.prepared, p.owner FROM pg_prepared_xacts AS p "
            "WHERE p.database = current_database() AND EXISTS ("
            # Its locks have no pid; they share a virtual transaction with its transaction id's.
            "SELECT 1 FROM pg_locks AS l JOIN pg_locks AS x "
            "ON x.virtualtransaction = l.virtualtransaction AND x.locktype = 'transactionid' "
            "WHERE x.transactionid = p.transaction AND l.pid IS NULL AND l.granted "
            f"AND {_ON_TABLE}) ORDER BY p.prepared",
            [table],
        )
        prepared = [_prepared(*row) for row in cur.fetchall()]
    return "; ".join(([sessions] if sessions else []) + prepared) or "none left by now"


def _prepared(gid: str, quoted: str, at: datetime, owner: str) -> str:
    """A prepared transaction, with the statements that end it ready to paste (the gid as SQL
    writes it, unless it holds characters a message should not carry)."""
    literal = quoted if quoted.isprintable() else "<its gid>"
    return (
        f"prepared transaction {gid!r} (prepared at {at} by {owner!r}: end it with COMMIT "
        f"PREPARED {literal} or ROLLBACK PREPARED {literal})"
    )


def _older_transactions(schema_editor: BaseDatabaseSchemaEditor, table: str) -> str:
    """The other sessions of this database that hold a snapshot (a transaction under
    ``REPEATABLE READ``, a query still running, a background worker such as a subscription's
    initial copy) but no lock on ``table``: an index build ``CONCURRENTLY`` waits, once it has
    built the index, for each of them that began before that moment, even one that never
    touched its table, and :func:`_holders` cannot name them. As PostgreSQL, it leaves out the
    processes of no role (autovacuum) and VACUUM; a parallel query is named by its leader
    (another role's query shows its workers too, as nothing tells them apart then)."""
    return (
        _sessions(
            schema_editor,
            "a.datname = current_database() AND a.usesysid IS NOT NULL "
            "AND a.backend_type IS DISTINCT FROM 'parallel worker' "
            "AND a.backend_xmin IS NOT NULL "
            "AND a.pid NOT IN (SELECT v.pid FROM pg_stat_progress_vacuum AS v) "
            f"AND NOT {_HOLDS_TABLE}",
            [table],
        )
        or "none left by now"
    )


def _sessions(schema_editor: BaseDatabaseSchemaEditor, condition: str, params: list[Any]) -> str:
    """The other sessions meeting ``condition`` (on ``pg_stat_activity AS a``), oldest
    transaction first, described; "" when there are none. Another role's session shows its
    type, state, start and query only to a role with ``pg_read_all_stats``."""
    with schema_editor.connection.cursor() as cur:
        cur.execute(
            "SELECT a.pid, a.backend_type, a.state, a.xact_start, left(a.query, 60), a.usename "
            "FROM pg_stat_activity AS a "
            f"WHERE a.pid <> pg_backend_pid() AND {condition} "
            "ORDER BY a.xact_start NULLS LAST, a.pid",
            params,
        )
        rows = cur.fetchall()
    return "; ".join(_session(*row) for row in rows)


def _session(
    pid: int, kind: str | None, state: str | None, since: Any, query: str, user: str
) -> str:
    if kind is None:  # only another role's session hides its type
        return f"pid {pid} (a session of {user!r}, whose activity needs pg_read_all_stats to see)"
    what = state if kind == "client backend" else f"a {kind}"
    return f"pid {pid} ({what}, transaction since {since}, last query {query!r})"


def _alter(
    schema_editor: BaseDatabaseSchemaEditor,
    table: str,
    clauses: list[str],
    *,
    migration: str = "0014",
) -> None:
    """One ``ALTER TABLE`` for all of ``table``'s clauses: one lock, under ``lock_timeout``.

    The lock is ACCESS EXCLUSIVE but held only for a catalog update (NOT VALID, or a drop). A
    transaction holding any lock on the table (a producer that enqueued inside ``atomic()``
    and has not committed) makes it wait: it gives up after ``LOCK_TIMEOUT``, so the statements
    queued behind it go on, pauses, and tries again; after ``LOCK_TRIES`` it stops and names
    the sessions holding the table.
    """
    connection = schema_editor.connection
    statement = f"ALTER TABLE {schema_editor.quote_name(table)} {', '.join(clauses)}"
    pause = FIRST_PAUSE_SECONDS
    for attempt in range(1, LOCK_TRIES + 1):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cur.execute(statement)
            return
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            if attempt == LOCK_TRIES:
                raise RuntimeError(
                    f"Migration pgjobs {migration} could not lock table {table} to change it: "
                    f"{LOCK_TRIES} tries waited {LOCK_TIMEOUT} each (never longer, so workers "
                    f"and producers went on). Sessions holding the table: "
                    f"{_holders(schema_editor, table)}. Commit or end these transactions "
                    "(pg_terminate_backend(pid) ends one), or run migrate when the queue is "
                    "quieter; then run migrate again: what is done already is kept."
                ) from error
        time.sleep(pause)
        pause *= 2


def add_not_valid(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    existing = _existing(schema_editor)
    clauses: dict[str, list[str]] = {}
    for model_name, constraint in CONSTRAINTS:
        if constraint.name in existing:
            continue
        model = apps.get_model("pgjobs", model_name)
        check = constraint.constraint_sql(model, schema_editor)
        clauses.setdefault(_TABLE_OF[constraint.name], []).append(f"ADD {check} NOT VALID")
    for table, added in clauses.items():
        _alter(schema_editor, table, added)


def validate(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    quote = schema_editor.quote_name
    for name, validated in _existing(schema_editor).items():
        if validated:
            continue
        table = quote(_TABLE_OF[name])
        try:
            schema_editor.execute(
                f"ALTER TABLE {table} VALIDATE CONSTRAINT {quote(name)}", params=None
            )
        except IntegrityError:
            # Written between the check of step 1 and the NOT VALID check of step 2.
            refuse_rows_out_of_range(apps, schema_editor)
            raise


def drop(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    quote = schema_editor.quote_name
    clauses: dict[str, list[str]] = {}
    for name, table in _TABLE_OF.items():
        clauses.setdefault(table, []).append(f"DROP CONSTRAINT IF EXISTS {quote(name)}")
    for table, dropped in clauses.items():
        _alter(schema_editor, table, dropped)


_AFTER_RESERVED = "    END IF;\n    LOOP\n"
_REFUSE_TIME = f"""    END IF;
    -- A time Python cannot read back would break every reader of the row (migration 0014).
    IF $5 IS NOT NULL AND NOT ($5 >= {_EARLIEST_SQL} AND $5 < {_LATEST_SQL}) THEN
        RAISE EXCEPTION 'scheduled_for % (UTC) is outside the supported range {_RANGE}.',
            $5 AT TIME ZONE 'UTC'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a finite time in that range, or NULL for now.';
    END IF;
    LOOP
"""
assert _0012.ENQUEUE_FUNCTION.count(_AFTER_RESERVED) == 1
ENQUEUE_FUNCTION = _0012.ENQUEUE_FUNCTION.replace(_AFTER_RESERVED, _REFUSE_TIME)


def _create_function(text: str, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _0002._schema(schema_editor)
    signature = _0009.SIGNATURE.format(schema=schema)
    # params=None: no client-side interpolation, so the % in the SQL stays as written.
    schema_editor.execute(text.format(schema=schema, signature=signature), params=None)


def create_function(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _create_function(ENQUEUE_FUNCTION, schema_editor)


def restore_function(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _create_function(_0012.ENQUEUE_FUNCTION, schema_editor)


class Migration(migrations.Migration):
    # Not atomic: each CHECK is added, then validated, in transactions of its own (see above).
    atomic = False
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0013_job_attempt_spared")]
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(refuse_rows_out_of_range, migrations.RunPython.noop, atomic=True),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(model_name=model, constraint=constraint)
                for model, constraint in CONSTRAINTS
            ],
            database_operations=[migrations.RunPython(add_not_valid, drop)],
        ),
        migrations.RunPython(validate, migrations.RunPython.noop, atomic=False),
        migrations.RunPython(create_function, restore_function, atomic=True),
    ]
