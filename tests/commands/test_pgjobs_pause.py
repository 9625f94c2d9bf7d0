"""``manage.py pgjobs pause QUEUE`` / ``resume QUEUE``: what they print, what they change (the row,
the claim, the wake-up)."""

from __future__ import annotations

from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import call_command

from django_pgjobs import enqueue
from django_pgjobs.models import Job, Queue
from django_pgjobs.worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def pgjobs(*args: str) -> str:
    out = StringIO()
    call_command("pgjobs", *args, stdout=out)
    return out.getvalue()


def woken(listener: psycopg.Connection[Any]) -> list[str]:
    listener.execute("SELECT 1")
    return [n.payload for n in listener.notifies(timeout=0)]


def test_pause_stops_the_queues_starts_and_resume_wakes_its_workers(
    make_worker: type[Worker], other_connection: psycopg.Connection[Any]
) -> None:
    other_connection.execute("LISTEN pgjobs")
    job_id = enqueue("test.record", queue="mail")
    woken(other_connection)
    assert pgjobs("pause", "mail") == "Queue mail paused.\n"
    row = Queue.objects.get(name="mail")
    assert row.paused and row.paused_at is not None
    assert make_worker(queues=["mail"]).run_once().claimed == 0
    assert Job.objects.get(id=job_id).status == "pending"
    assert "mail  PAUSED" in pgjobs("queues")
    assert pgjobs("pause", "mail") == "Queue mail was paused already.\n"
    woken(other_connection)
    assert pgjobs("resume", "mail") == "Queue mail resumed.\n"
    assert woken(other_connection) == ["mail"]  # idle workers start it at once
    row = Queue.objects.get(name="mail")
    assert not row.paused and row.paused_at is None
    assert pgjobs("resume", "mail") == "Queue mail was not paused.\n"
    assert make_worker(queues=["mail"]).run_once().claimed == 1


def test_resume_of_a_queue_no_row_names_says_it_was_not_paused_and_writes_nothing() -> None:
    assert pgjobs("resume", "mail") == "Queue mail was not paused.\n"
    assert not Queue.objects.exists()
