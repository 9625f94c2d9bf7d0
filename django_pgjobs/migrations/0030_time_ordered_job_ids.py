"""Job ids ordered by time (issue 17): ``pgjobs_uuid7()``, the default of ``pgjobs_job_queue.id``.

A job's id breaks ties in the claim's order and keys its row; random ids (version 4) ran the jobs
of one batch in random order and scattered each claim's and completion's writes over the table
and its key (django_pgjobs.jobs.ids). A row inserted without an id (a plain ``INSERT``,
``pgjobs_enqueue()``, a schedule's tick, a workflow's job) now gets a UUID of version 7: 48
bits of Unix time in milliseconds, 12 bits of the millisecond's fraction, 62 random bits, as
the library's Python makes them. On PostgreSQL 18 and later it is the server's own
``uuidv7()``; before, the same layout from ``clock_timestamp()`` and ``gen_random_uuid()``, in
PL/pgSQL with every function, operator and type named in ``pg_catalog`` (no ``search_path``
can replace them) rather than under ``SET search_path``, which costs each call (a default runs
for every row inserted without an id: 1.9 us a row against gen_random_uuid()'s 0.9, with the
SET 2.9, as SQL-standard function bodies 4.3). Existing rows keep their ids. Changing the
default takes the table's lock for a catalog update only (``_0014._alter``: bounded waits).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

import django_pgjobs.models.jobs

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")

# PostgreSQL 17 and older: the layout of uuidv7(), in SQL.
FUNCTION_BEFORE_18 = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_uuid7() RETURNS uuid
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
AS $$
DECLARE
    -- Milliseconds since 1970 with their fraction (a double, exact to a quarter of a microsecond).
    t double precision := pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())
                          OPERATOR(pg_catalog.*) 1000;
    ms bigint := pg_catalog.floor(t);
    fraction integer := pg_catalog.floor((t OPERATOR(pg_catalog.-) ms) OPERATOR(pg_catalog.*) 4096);
BEGIN
    -- A version 4 UUID's variant and random bits, its first 8 bytes replaced: 48 bits of
    -- milliseconds, then 0x7 (the version) and 12 bits of the millisecond's fraction.
    RETURN pg_catalog.encode(
        pg_catalog.overlay(
            pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
            pg_catalog.substring(pg_catalog.int8send(ms), 3)
                OPERATOR(pg_catalog.||)
                pg_catalog.substring(pg_catalog.int4send(28672 OPERATOR(pg_catalog.+) fraction), 3),
            1, 8),
        'hex')::pg_catalog.uuid;
END;
$$;
"""

FUNCTION_18 = """
CREATE OR REPLACE FUNCTION {schema}.pgjobs_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN uuidv7();
"""

COMMENT = """
COMMENT ON FUNCTION {schema}.pgjobs_uuid7()
IS 'django-pgjobs: a new job id, a UUID of version 7 (time-ordered), the id column''s default.';
"""


def use_time_ordered_ids(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _0002._schema(schema_editor)
    server = schema_editor.connection.pg_version  # type: ignore[attr-defined]
    function = FUNCTION_18 if server >= 180000 else FUNCTION_BEFORE_18
    schema_editor.execute(function.format(schema=schema), params=None)
    schema_editor.execute(COMMENT.format(schema=schema), params=None)
    _0014._alter(
        schema_editor,
        "pgjobs_job_queue",
        [f"ALTER COLUMN id SET DEFAULT {schema}.pgjobs_uuid7()"],
        migration="0030",
    )


def use_random_ids(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _0002._schema(schema_editor)
    _0014._alter(
        schema_editor,
        "pgjobs_job_queue",
        ["ALTER COLUMN id SET DEFAULT gen_random_uuid()"],
        migration="0030",
    )
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {schema}.pgjobs_uuid7()", params=None)


class Migration(migrations.Migration):
    # Not atomic: _0014._alter runs each try in a transaction of its own.
    atomic = False

    dependencies: ClassVar[list[Any]] = [("pgjobs", "0029_pending_again")]

    operations: ClassVar[list[Any]] = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(use_time_ordered_ids, use_random_ids)],
            state_operations=[
                migrations.AlterField(
                    model_name="job",
                    name="id",
                    field=models.UUIDField(
                        db_default=django_pgjobs.models.jobs.NewJobId(),
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ],
        ),
    ]
