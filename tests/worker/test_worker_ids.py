"""A worker id belongs to one process at a time, known by the random instance token in its row:
host name and pid cannot tell processes apart (two containers with one ``hostname:`` are both
pid 1). Only a silent worker's id is taken over; heartbeat and deregistration touch only their
own instance's row."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from django_pgjobs import enqueue, get_job, queries
from django_pgjobs.exceptions import WorkerIdInUse
from django_pgjobs.models import Worker as WorkerRow
from django_pgjobs.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def row(token: str) -> dict[str, Any]:
    """Two processes that share host name and pid (containers): only the token differs."""
    return {
        "id": "twin", "hostname": "app", "pid": 1, "queues": "[]", "concurrency": 1,
        "instance_token": token,
    }  # fmt: skip


def test_two_workers_with_one_id_host_and_pid_are_told_apart_by_their_instance_token(
    make_worker: type[Worker],
) -> None:
    first = make_worker(worker_id="twin")
    job_id = enqueue("test.record")
    first.run_once()  # registered, and stays so between cycles
    held = WorkerRow.objects.get(id="twin")
    # Same id, same host, same pid (this very process): a second process all the same.
    second = make_worker(worker_id="twin")
    with pytest.raises(WorkerIdInUse, match="belongs to a live worker"):
        second.run_once()
    second.close()  # it never registered: the first worker's row stays
    assert WorkerRow.objects.get(id="twin").instance_token == held.instance_token
    assert get_job(job_id).status == "completed"
    first.close()
    assert not WorkerRow.objects.filter(id="twin").exists()


def test_heartbeat_and_deregistration_touch_only_their_own_instance_s_row() -> None:
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    with connection.cursor() as cur:
        assert queries.register_worker(cur, worker=row(mine), silent_seconds=60)
        assert not queries.register_worker(cur, worker=row(theirs), silent_seconds=60)
        assert queries.register_worker(cur, worker=row(mine), silent_seconds=60)  # ours again
        earlier = timezone.now() - timedelta(seconds=10)
        WorkerRow.objects.filter(id="twin").update(last_heartbeat_at=earlier)
        queries.heartbeat(cur, worker=row(theirs), tokens=[], lease_seconds=30)
        assert WorkerRow.objects.get(id="twin").last_heartbeat_at == earlier
        queries.deregister_worker(cur, worker_id="twin", instance_token=theirs)
        assert WorkerRow.objects.filter(id="twin").exists()
        queries.heartbeat(cur, worker=row(mine), tokens=[], lease_seconds=30)
        assert WorkerRow.objects.get(id="twin").last_heartbeat_at > earlier
        queries.deregister_worker(cur, worker_id="twin", instance_token=mine)
        assert not WorkerRow.objects.filter(id="twin").exists()


def test_a_silent_worker_s_id_is_taken_over_even_from_a_row_without_a_token() -> None:
    """A row from before migration 0015 (no token), or of a process that died: free once it has
    been silent longer than the worker silence limit, and only then."""
    WorkerRow.objects.create(id="twin", hostname="app", pid=1)
    with connection.cursor() as cur:
        assert not queries.register_worker(cur, worker=row(str(uuid.uuid4())), silent_seconds=60)
        WorkerRow.objects.filter(id="twin").update(
            last_heartbeat_at=timezone.now() - timedelta(seconds=61)
        )
        token = str(uuid.uuid4())
        assert queries.register_worker(cur, worker=row(token), silent_seconds=60)
    assert str(WorkerRow.objects.get(id="twin").instance_token) == token


def test_a_worker_records_the_job_names_it_claims_and_a_swept_row_comes_back_with_them(
    make_worker: type[Worker],
) -> None:
    """explain_job reads them: "no live worker has its handler" (migration 0019)."""
    from django_pgjobs.jobs.registry import registry

    worker = make_worker(worker_id="lister")
    worker.run_once()  # registers
    assert WorkerRow.objects.get(id="lister").handlers == registry.names()
    assert "test.record" in registry.names()
    WorkerRow.objects.filter(id="lister").delete()  # presumed dead and forgotten
    conn = worker._link.conn
    assert conn is not None
    worker._housekeeper.run_due(conn, [], heartbeat=True)  # its next heartbeat
    assert WorkerRow.objects.get(id="lister").handlers == registry.names()


def test_a_row_without_handlers_stores_null_not_known() -> None:
    with connection.cursor() as cur:
        assert queries.register_worker(cur, worker=row(str(uuid.uuid4())), silent_seconds=60)
    assert WorkerRow.objects.get(id="twin").handlers is None


def test_a_registration_that_failed_is_tried_again_before_the_worker_claims(
    make_worker: type[Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error in the registration left the connection open: the worker never
    registered again, yet claimed, its heartbeat wrote its row without the check of its id."""
    real = queries.register_worker
    calls: list[int] = []

    def fails_once(*args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.errors.LockNotAvailable("held")
        return real(*args, **kwargs)

    monkeypatch.setattr(queries, "register_worker", fails_once)
    worker = make_worker(worker_id="retries-its-registration")
    job_id = enqueue("test.record")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        worker.run_once()
    assert get_job(job_id).status == "pending"  # nothing claimed unregistered
    worker.run_once()
    assert len(calls) == 2
    assert get_job(job_id).status == "completed"
    assert WorkerRow.objects.filter(id="retries-its-registration").exists()
