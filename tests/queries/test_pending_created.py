"""Migration 0031: ``pgjobs_job_created`` (every row) gave way to ``pgjobs_job_pending_created``
(pending jobs due before they were created), and the job lists read newest first by id."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from django_pgjobs import enqueue
from django_pgjobs.jobs import list_jobs
from django_pgjobs.models import Job
from django_pgjobs.worker import Worker
from tests.helpers import drain, migrate_while_held

_0014 = importlib.import_module("django_pgjobs.migrations.0014_times_in_range")
_0031 = importlib.import_module("django_pgjobs.migrations.0031_created_index_pending_only")


def job_indexes() -> dict[str, str]:
    """The job table's indexes on created_at: name -> definition."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'pgjobs_job_queue' "
            "AND indexdef LIKE '%%(created_at)%%'"
        )
        return dict(cur.fetchall())


@pytest.fixture
def at_0030(transactional_db: None) -> Iterator[None]:
    call_command("migrate", "pgjobs", "0030", verbosity=0)
    yield
    call_command("migrate", "pgjobs", verbosity=0)


def test_0031_swaps_the_index_and_back_and_a_second_run_changes_nothing(at_0030: None) -> None:
    assert list(job_indexes()) == ["pgjobs_job_created"]
    call_command("migrate", "pgjobs", "0031", verbosity=0)
    indexes = job_indexes()
    assert list(indexes) == ["pgjobs_job_pending_created"]
    condition = "WHERE (((status)::text = 'pending'::text) AND (scheduled_for < created_at))"
    assert condition in indexes["pgjobs_job_pending_created"]
    with connection.schema_editor(atomic=False) as editor:
        _0031.forwards(None, editor)  # done already: skips both steps
    assert list(job_indexes()) == ["pgjobs_job_pending_created"]
    call_command("migrate", "pgjobs", "0030", verbosity=0)
    assert list(job_indexes()) == ["pgjobs_job_created"]


def test_0031_replaces_an_invalid_index_left_by_a_stopped_build(at_0030: None) -> None:
    """A build stopped other than by its lock wait (a cancel, a lost connection) leaves an
    invalid index behind, which ``IF NOT EXISTS`` would keep: the old index would then be
    dropped with nothing valid in its place."""
    with connection.cursor() as cur:
        cur.execute(f"CREATE INDEX {_0031.NEW} ON pgjobs_job_queue (created_at)")
        cur.execute(
            f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{_0031.NEW}'::regclass"
        )
    call_command("migrate", "pgjobs", "0031", verbosity=0)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index AS i "
            "JOIN pg_class AS c ON c.oid = i.indexrelid WHERE c.relname LIKE 'pgjobs_job_%%created'"
        )
        ((name, valid, definition),) = cur.fetchall()
    assert (name, valid) == (_0031.NEW, True)
    assert "scheduled_for < created_at" in definition  # built again, not the planted one


def test_0031_waits_out_a_transaction_that_holds_the_table_past_one_try(
    at_0030: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer's transaction holds the table past the first try's wait: that build gives
    up, leaving an invalid index, which the next try drops before building again. (Taken as
    built instead, the migration stopped at its validity check, or went on with it invalid.)"""
    monkeypatch.setattr(_0014, "LOCK_TIMEOUT", "300ms")
    monkeypatch.setattr(_0014, "LOCK_TRIES", 8)
    # Held until the first try gave up (leaving its invalid build).
    migrate_while_held("SELECT pgjobs_enqueue('test.record')", "0031", monkeypatch)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [_0031.NEW]
        )
        assert cur.fetchall() == [(True,)]
    assert list(job_indexes()) == [_0031.NEW]


def in_the_index() -> set[str]:
    """The jobs the partial index holds, read through it: the other indexes of pending jobs,
    as cheap on a table this small, are dropped in a transaction rolled back after the read."""
    sql = (
        "SELECT payload ->> 'n' FROM pgjobs_job_queue "
        "WHERE status = 'pending' AND scheduled_for < created_at AND created_at > '-infinity'"
    )
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "DROP INDEX pgjobs_job_claim, pgjobs_job_queue_claim, pgjobs_job_partition_claim"
        )
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cur.fetchall())
        assert "pgjobs_job_pending_created" in plan, plan
        cur.execute(sql)
        held = {name for (name,) in cur.fetchall()}
        transaction.set_rollback(True)
    return held


def entries() -> int:
    """Index entries in the partial index's one leaf page (a root that is a leaf, as small as it
    is here), dead ones included: pageinspect, in a transaction rolled back after the count."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        cur.execute("SELECT root, level FROM bt_metap(%s)", [_0031.NEW])
        root, level = cur.fetchone()
        assert level == 0, "the index grew past one page"
        cur.execute("SELECT count(*) FROM bt_page_items(%s, %s)", [_0031.NEW, root])
        count = int(cur.fetchone()[0])
        transaction.set_rollback(True)
    return count


@pytest.mark.django_db(transaction=True)
def test_the_index_holds_pending_jobs_due_before_they_were_created(
    make_worker: type[Worker],
) -> None:
    with connection.cursor() as cur:  # one statement, its own transaction: due when created
        cur.execute(
            "INSERT INTO pgjobs_job_queue (job_name, payload) "
            """VALUES ('test.record', '{"n": "plain insert"}')"""
        )
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_sleep(0.01)")  # the transaction began before the insert
        # Due at the transaction's start, created at its statement's.
        transactional = enqueue("test.record", {"n": "in a transaction"})
    enqueue("test.record", {"n": "later"}, scheduled_for=timedelta(minutes=5))
    assert in_the_index() == {"in a transaction"}
    assert entries() == 1
    # Claimed and completed, a job leaves it, and neither writes an entry (an index of every row
    # held 3 entries before the drain and took 2 more for each job run).
    drain(make_worker())
    assert in_the_index() == set()
    assert entries() <= 1  # the enqueue's, or none once vacuumed
    assert Job.objects.get(id=transactional).status == "completed"


@pytest.mark.django_db(transaction=True)
def test_the_lists_are_newest_first_by_id_whatever_created_at_says() -> None:
    ids = [enqueue("test.record", {"n": n}) for n in range(3)]
    # created_at is the writer's to set (a plain INSERT may): the order is the id's.
    Job.objects.filter(id=ids[0]).update(created_at="2100-01-01T00:00:00Z")
    assert [j.id for j in list_jobs()] == ids[::-1]
    assert [j.id for j in Job.objects.all()] == ids[::-1]
