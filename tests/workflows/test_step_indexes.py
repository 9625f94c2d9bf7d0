"""Migration 0032: the workflow_id foreign keys of steps, messages and events are served by the
indexes that lead with workflow_id, and Django's two extra indexes of each are gone."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from tests.helpers import migrate_while_held

_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")
_0032 = importlib.import_module("django_pgjobs.migrations.0032_workflow_foreign_keys_unindexed")

TABLES = tuple(_0032.INDEXES)


def workflow_id_indexes() -> dict[str, dict[str, str]]:
    """Per table, its indexes whose first column is workflow_id: name -> definition."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT t.relname, i.relname, pg_get_indexdef(i.oid)
            FROM pg_index AS x
            JOIN pg_class AS i ON i.oid = x.indexrelid
            JOIN pg_class AS t ON t.oid = x.indrelid
            JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
            WHERE t.relname = ANY(%s) AND a.attname = 'workflow_id'
            """,
            [list(TABLES)],
        )
        found: dict[str, dict[str, str]] = {table: {} for table in TABLES}
        for table, index, definition in cur.fetchall():
            found[table][index] = definition
        return found


def names(indexes: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    return {table: sorted(found) for table, found in indexes.items()}


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
        assert names(before)[table] == sorted([*LEADING[table], name, f"{name}_like"])
        assert before[table][name].endswith(f"ON public.{table} USING btree (workflow_id)")
        assert "(workflow_id varchar_pattern_ops)" in before[table][f"{name}_like"]
    call_command("migrate", "pgjobs", "0032", verbosity=0)
    assert names(workflow_id_indexes()) == LEADING
    with connection.schema_editor(atomic=False) as editor:
        _0032.forwards(None, editor)  # done already: drops nothing more, fails on nothing
    assert names(workflow_id_indexes()) == LEADING
    call_command("migrate", "pgjobs", "0031", verbosity=0)
    assert workflow_id_indexes() == before  # the same definitions, not only the same names
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
    (its checkpoints' load, the rows pruning deletes with it) are found through the index that
    leads with workflow_id (sequential scans off: a table this small would be read whole)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        for table, [index] in LEADING.items():
            cur.execute(f"EXPLAIN SELECT * FROM {table} WHERE workflow_id = 'w'")
            plan = " ".join(row[0] for row in cur.fetchall())
            # "Index Scan using <index>", or "Bitmap Index Scan on <index>"
            assert re.search(rf"\b(using|on) {index}\b", plan), plan


def test_0032_waits_out_a_transaction_that_holds_the_steps_table(
    at_0031: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow's checkpoint in an open transaction holds the steps table past the first
    try's wait: the drop gives up under lock_timeout (workers go on), tries again, and is done
    once the transaction ends."""
    monkeypatch.setattr(_0014, "LOCK_TIMEOUT", "300ms")
    monkeypatch.setattr(_0014, "LOCK_TRIES", 8)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pgjobs_workflow_executions (workflow_id, name, app_version) "
            "VALUES ('w', 'test.greet', '')"
        )
    gave_up = migrate_while_held(
        "INSERT INTO pgjobs_workflow_steps (workflow_id, step_index, step_name, status) "
        "VALUES ('w', 0, 's', 'completed')",
        "0032",
        monkeypatch,
    )
    assert gave_up, "the drop never gave up a try: it waited without lock_timeout"
    assert names(workflow_id_indexes()) == LEADING
