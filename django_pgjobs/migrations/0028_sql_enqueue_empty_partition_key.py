"""``pgjobs_enqueue()`` refuses an empty ``partition_key`` (SQLSTATE 22023), as ``enqueue()``
does (rev27: SQL took it, Python refused it). NULL is "no partition"; a key names one.

The signature does not change, so ``CREATE OR REPLACE`` keeps the function's owner and
privileges (0018 had to drop and create it). The body is 0018's with one refusal more. A plain
``INSERT`` of a row with ``partition_key = ''`` is still taken, and the claim treats ``''`` as a
key of its own (it is not NULL): only the function, the one way in that says what it refuses,
changes. Reversing restores 0018's body.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

_0002 = importlib.import_module("django_pgjobs.migrations.0002_sql_enqueue_and_notify")
_0018 = importlib.import_module(
    "django_pgjobs.migrations.0018_sql_enqueue_partition_key_and_timeout"
)

_BEFORE_LENGTH = "    -- What enqueue() refuses too: a key longer than an index entry"
_REFUSE_EMPTY = """    IF $8 = '' THEN
        RAISE EXCEPTION 'partition_key is empty: a key names a partition.'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for a job without a partition.';
    END IF;
"""
assert _0018.ENQUEUE_FUNCTION.count(_BEFORE_LENGTH) == 1
ENQUEUE_FUNCTION = _0018.ENQUEUE_FUNCTION.replace(_BEFORE_LENGTH, _REFUSE_EMPTY + _BEFORE_LENGTH)


def _create(text: str, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema = _0002._schema(schema_editor)
    signature = _0018.SIGNATURE.format(schema=schema)
    # params=None: no client-side interpolation, so the % in the SQL stays as written.
    schema_editor.execute(text.format(schema=schema, signature=signature), params=None)


def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _create(ENQUEUE_FUNCTION, schema_editor)


def restore(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _create(_0018.ENQUEUE_FUNCTION, schema_editor)


class Migration(migrations.Migration):
    dependencies: ClassVar[list[Any]] = [("pgjobs", "0027_queue_row_rules")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create, restore)]
