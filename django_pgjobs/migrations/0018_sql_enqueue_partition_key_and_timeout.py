"""``pgjobs_enqueue()`` takes ``partition_key text`` and ``timeout interval`` (both DEFAULT NULL),
the enqueue options of migration 0017, so a job enqueued from SQL can join a partition and have
a timeout as one from Python can.

Why DROP and CREATE, not ``CREATE OR REPLACE`` as 0009, 0012 and 0014 do: ``CREATE OR REPLACE``
cannot add parameters (the new argument list is another function), and adding a second
function beside the old one, with defaults on every parameter after ``job_name``, would make
every existing call ambiguous (``pgjobs_enqueue('x')`` would match both). So the function is
dropped and created again in one transaction (no session ever finds it missing), and what a
drop would lose is carried over:

- its owner, and its ``EXECUTE`` privileges, read from ``pg_proc.proacl`` (``aclexplode``; a NULL
  ACL is the default one, ``acldefault``) before the drop and applied to the new function after
  it: every privilege the new function got on creation (``PUBLIC``'s default ``EXECUTE``, or
  ``ALTER DEFAULT PRIVILEGES``) is revoked first, so a deployment that revoked ``EXECUTE`` from
  ``PUBLIC`` keeps it revoked. A grant made by a third role is re-made by the migrating role
  (recorded with the owner as its grantor).
- Objects that depend on it (a ``BEGIN ATOMIC`` SQL function, a view, a column default calling
  it) would make the drop fail: they are named first, with what to do, and nothing changes.
  Functions whose bodies are strings (``LANGUAGE plpgsql``, or ``sql`` with ``AS $$...$$``)
  record no dependency and keep working: calls by position or by name resolve to the new
  function.

The body is 0014's, with the two new columns; it keeps ``search_path`` pinned, the reserved-name
and reserved-key refusals of 0012 and the time-range check of 0014, and refuses what
``enqueue()`` refuses in the new arguments (a partition key over 500 characters, a timeout not
> 0 or over 366 days) with SQLSTATE 22023. Reversing restores 0014's function the same way.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0009 = importlib.import_module("django_pgjobs.migrations.0009_sql_enqueue_default_attempts")
_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")

SIGNATURE = (
    "{schema}.pgjobs_enqueue(text, jsonb, text, integer, timestamptz, integer, text, text, "
    "interval)"
)
# jobs.validation.MAX_KEY_LENGTH and MAX_TIMEOUT, as of this migration.
_MAX_PARTITION_KEY = 500
_MAX_TIMEOUT = "366 days"

ENQUEUE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {{schema}}.pgjobs_enqueue(
    job_name text,
    payload jsonb DEFAULT '{{{{}}}}'::jsonb,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    scheduled_for timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    job_key text DEFAULT NULL,
    partition_key text DEFAULT NULL,
    timeout interval DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    -- The library's own names and keys (a workflow's runner, a workflow's or a tick's key).
    IF starts_with($1, 'pgjobs.') THEN
        RAISE EXCEPTION 'The job name % starts with ''pgjobs.'', which is reserved for '
                        'django-pgjobs''s own jobs.', quote_literal($1)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Choose another job name.';
    END IF;
    IF starts_with($7, 'pgjobs.') THEN
        RAISE EXCEPTION 'The key % starts with ''pgjobs.'', which is reserved for '
                        'django-pgjobs''s own keys.', quote_literal($7)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Choose another key.';
    END IF;
    -- A time Python cannot read back would break every reader of the row (migration 0014).
    IF $5 IS NOT NULL AND NOT ($5 >= {_0014._EARLIEST_SQL} AND $5 < {_0014._LATEST_SQL}) THEN
        RAISE EXCEPTION 'scheduled_for % (UTC) is outside the supported range {_0014._RANGE}.',
            $5 AT TIME ZONE 'UTC'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a finite time in that range, or NULL for now.';
    END IF;
    -- What enqueue() refuses too: a key longer than an index entry of the claim holds safely.
    IF length($8) > {_MAX_PARTITION_KEY} THEN
        RAISE EXCEPTION 'partition_key is % characters long; the limit is {_MAX_PARTITION_KEY}.',
            length($8)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Hash a longer natural key.';
    END IF;
    IF $9 IS NOT NULL AND NOT ($9 > interval '0' AND $9 <= interval '{_MAX_TIMEOUT}') THEN
        RAISE EXCEPTION 'timeout % must be > 0 and at most {_MAX_TIMEOUT}.', $9
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for the handler''s or the queue''s timeout.';
    END IF;
    LOOP
        -- Without max_attempts the column is left out, so its default applies: the one migrate
        -- sets from PGJOBS["MAX_ATTEMPTS"].
        IF $6 IS NULL THEN
            INSERT INTO {{schema}}.pgjobs_job_queue
                (job_name, payload, queue, priority, scheduled_for, key, partition_key, timeout)
            VALUES
                ($1, coalesce($2, '{{{{}}}}'::jsonb), coalesce($3, 'default'), coalesce($4, 0),
                 coalesce($5, now()), $7, $8, $9)
            ON CONFLICT (key) WHERE key IS NOT NULL AND status IN ('pending', 'running')
            DO NOTHING
            RETURNING id INTO new_id;
        ELSE
            INSERT INTO {{schema}}.pgjobs_job_queue
                (job_name, payload, queue, priority, scheduled_for, max_attempts, key,
                 partition_key, timeout)
            VALUES
                ($1, coalesce($2, '{{{{}}}}'::jsonb), coalesce($3, 'default'), coalesce($4, 0),
                 coalesce($5, now()), $6, $7, $8, $9)
            ON CONFLICT (key) WHERE key IS NOT NULL AND status IN ('pending', 'running')
            DO NOTHING
            RETURNING id INTO new_id;
        END IF;
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        -- The key is held by an active job: enqueueing is idempotent, return that job. If it
        -- finished in between (nothing found), the key is free again: try the insert again.
        SELECT j.id INTO new_id FROM {{schema}}.pgjobs_job_queue AS j
        WHERE j.key = $7 AND j.status IN ('pending', 'running');
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION {{signature}}
IS 'Enqueue a django-pgjobs job from SQL; with job_key, returns the active job holding the key.';
"""

# The function's owner and privileges, one row per (grantee, privilege); a NULL ACL is the
# default one. No row: the function does not exist.
_PRIVILEGES = """
SELECT p.proowner::regrole::text,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
       a.privilege_type, a.is_grantable
FROM pg_proc AS p,
     aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
WHERE p.oid = to_regprocedure(%s)
ORDER BY 2, 3
"""

# Objects a plain DROP FUNCTION would refuse to drop the function under.
_DEPENDENTS = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
FROM pg_depend AS d
WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid = to_regprocedure(%s)
  AND d.deptype = 'n'
ORDER BY 1
"""

Grant = tuple[str, str, bool]


def _privileges(schema_editor: BaseDatabaseSchemaEditor, signature: str) -> tuple[str, list[Grant]]:
    with schema_editor.connection.cursor() as cur:
        cur.execute(_PRIVILEGES, [signature])
        rows = cur.fetchall()
    if not rows:
        return "", []
    return rows[0][0], [
        (grantee, privilege, grantable) for _, grantee, privilege, grantable in rows
    ]


def _replace(
    schema_editor: BaseDatabaseSchemaEditor, *, old: str, new: str, text: str, migration: str
) -> None:
    """Drop the function ``old`` and create ``text`` (whose signature is ``new``) with ``old``'s
    owner and privileges; refuse, changing nothing, when objects depend on ``old``."""
    schema = _0002._schema(schema_editor)
    old_signature, new_signature = old.format(schema=schema), new.format(schema=schema)
    with schema_editor.connection.cursor() as cur:
        cur.execute(_DEPENDENTS, [old_signature])
        dependents = [row[0] for row in cur.fetchall()]
    if dependents:
        raise RuntimeError(
            f"Migration {migration} replaces {old_signature} (its arguments change), and "
            f"these depend on it: {', '.join(dependents)}. Drop them, run migrate again, then "
            "create them again (SELECT pg_get_functiondef('name'::regproc) shows a function's "
            "definition). Nothing was changed."
        )
    owner, grants = _privileges(schema_editor, old_signature)
    if owner:
        schema_editor.execute(f"DROP FUNCTION {old_signature}", params=None)
    # params=None: no client-side interpolation, so the % in the SQL stays as written.
    schema_editor.execute(text.format(schema=schema, signature=new_signature), params=None)
    if not owner:
        return  # there was no function to carry anything over from
    created_by, created_with = _privileges(schema_editor, new_signature)
    if created_by != owner:
        schema_editor.execute(f"ALTER FUNCTION {new_signature} OWNER TO {owner}", params=None)
    # What the new function got on creation goes, then what the old one had comes back.
    for grantee in sorted({grantee for grantee, _, _ in created_with}):
        schema_editor.execute(f"REVOKE ALL ON FUNCTION {new_signature} FROM {grantee}", params=None)
    for grantee, privilege, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        schema_editor.execute(
            f"GRANT {privilege} ON FUNCTION {new_signature} TO {grantee}{option}", params=None
        )


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _replace(
        schema_editor, old=_0009.SIGNATURE, new=SIGNATURE, text=ENQUEUE_FUNCTION, migration="0018"
    )


def restore(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _replace(
        schema_editor,
        old=SIGNATURE,
        new=_0009.SIGNATURE,
        text=_0014.ENQUEUE_FUNCTION,
        migration="0018 (reversed)",
    )


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0017_flow_control")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create, restore)]
