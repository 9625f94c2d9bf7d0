"""Migration 0032: the workflow_id foreign keys of steps, messages and events are served by the
indexes that lead with workflow_id, and Django's two extra indexes of each are gone."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection, transaction

_0032 = importlib.import_module("django_pgjobs.migrations.0032_workflow_foreign_keys_unindexed")

TABLES = tuple(_0032.INDEXES)


def workflow_id_indexes() -> dict[str, list[str]]:
    """Per table, its indexes whose first column is workflow_id, by name."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT t.relname, i.relname
            FROM pg_index AS x
            JOIN pg_class AS i ON i.oid = x.indexrelid
            JOIN pg_class AS t ON t.oid = x.indrelid
            JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
            WHERE t.relname = ANY(%s) AND a.attname = 'workflow_id'
            ORDER BY 1, 2
            """,
            [list(TABLES)],
        )
        found: dict[str, list[str]] = {table: [] for table in TABLES}
        for table, index in cur.fetchall():
            found[table].append(index)
        return found


LEADING = {
    "pgjobs_workflow_steps": ["pgjobs_workflow_step_unique"],
    "pgjobs_workflow_messages": ["pgjobs_message_inbox"],
    "pgjobs_workflow_events": ["pgjobs_workflow_event_key"],
}


@pytest.fixture
def at_0031(transactional_db: None) -> Iterator[None]:
    call_command("migrate", "pgjobs", "0031", verbosity=0)
    yield
    call_command("migrate", "pgjobs", verbosity=0)


def test_0032_drops_the_extra_indexes_and_back_and_a_second_run_changes_nothing(
    at_0031: None,
) -> None:
    before = workflow_id_indexes()
    for table, name in _0032.INDEXES.items():
        assert sorted(before[table]) == sorted([*LEADING[table], name, f"{name}_like"])
    call_command("migrate", "pgjobs", "0032", verbosity=0)
    assert workflow_id_indexes() == LEADING
    with connection.schema_editor(atomic=False) as editor:
        _0032.forwards(None, editor)  # done already: drops nothing more, fails on nothing
    assert workflow_id_indexes() == LEADING
    call_command("migrate", "pgjobs", "0031", verbosity=0)
    assert workflow_id_indexes() == before
    with connection.schema_editor(atomic=False) as editor:
        _0032.backwards(None, editor)  # built already: skipped
    assert workflow_id_indexes() == before


def test_0032_rebuilds_an_index_a_stopped_build_left_invalid(at_0031: None) -> None:
    call_command("migrate", "pgjobs", "0032", verbosity=0)
    name = _0032.INDEXES["pgjobs_workflow_steps"]
    with connection.cursor() as cur:
        cur.execute(f"CREATE INDEX {name} ON pgjobs_workflow_steps (workflow_id)")
        cur.execute(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{name}'::regclass")
    call_command("migrate", "pgjobs", "0031", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [name])
        assert cur.fetchall() == [(True,)]


@pytest.mark.django_db
def test_the_lookups_by_workflow_read_the_index_that_leads_with_it() -> None:
    """What the dropped indexes served, the remaining ones do: a workflow's rows of each table
    (its checkpoints' load, the cascade when it is pruned) are found through the index that
    leads with workflow_id (sequential scans off: a table this small would be read whole)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        for table, [index] in LEADING.items():
            cur.execute(f"EXPLAIN SELECT * FROM {table} WHERE workflow_id = 'w'")
            plan = " ".join(row[0] for row in cur.fetchall())
            assert f"using {index} on {table}" in plan.lower(), plan
