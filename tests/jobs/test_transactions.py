"""Enqueueing joins the caller's transaction: the job and the wake-up exist at its commit, or
never."""

from __future__ import annotations

import select
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connections, transaction

from django_pgjobs import enqueue, enqueue_on_commit, get_job
from django_pgjobs.models import Job
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def count_seen_by(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> int:
    row = conn.execute("SELECT count(*) FROM pgjobs_job_queue WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(autouse=True)
def _close_other_connections() -> Any:
    yield
    connections["other"].close()


def test_enqueue_inside_atomic_is_invisible_to_others_until_commit(
    other_connection: psycopg.Connection[Any],
) -> None:
    with transaction.atomic():
        Order.objects.create(reference="A-1")
        job_id = enqueue("test.record", {"order": "A-1"})
        assert count_seen_by(other_connection, job_id) == 0
    assert count_seen_by(other_connection, job_id) == 1


def test_rollback_leaves_no_job_and_no_order() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(reference="B-1")
        enqueue("test.record", {"order": "B-1"})
        raise RuntimeError("the view failed")
    assert Job.objects.count() == 0
    assert Order.objects.count() == 0


def test_workers_are_notified_at_commit_not_before(
    other_connection: psycopg.Connection[Any],
) -> None:
    other_connection.execute("LISTEN pgjobs")
    with transaction.atomic():
        enqueue("test.record", queue="mail")
        assert not list(other_connection.notifies(timeout=0.2))
    select.select([other_connection.fileno()], [], [], 5)
    assert [n.payload for n in other_connection.notifies(timeout=1, stop_after=1)] == ["mail"]


def test_rolled_back_enqueue_notifies_no_one(other_connection: psycopg.Connection[Any]) -> None:
    other_connection.execute("LISTEN pgjobs")
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("test.record")
        raise RuntimeError
    assert not list(other_connection.notifies(timeout=0.3))


def test_enqueue_on_commit_inserts_only_after_commit() -> None:
    with transaction.atomic():
        job_id = enqueue_on_commit("test.record", {"x": 1})
        assert not Job.objects.filter(id=job_id).exists()
    assert get_job(job_id).payload == {"x": 1}


def test_enqueue_on_commit_does_nothing_on_rollback() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_on_commit("test.record")
        raise RuntimeError
    assert Job.objects.count() == 0


def test_enqueue_on_commit_waits_for_the_named_database() -> None:
    with transaction.atomic(using="other"):
        job_id = enqueue_on_commit("test.record", commit_of="other")
        assert not Job.objects.filter(id=job_id).exists()
    assert Job.objects.filter(id=job_id).exists()

    with pytest.raises(RuntimeError), transaction.atomic(using="other"):
        rolled_back = enqueue_on_commit("test.record", commit_of="other")
        raise RuntimeError
    assert not Job.objects.filter(id=rolled_back).exists()
