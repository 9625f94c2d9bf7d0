"""``manage.py pgjobs pause QUEUE`` / ``resume QUEUE``: what they print, what they change (the row,
the claim, the wake-up), and a pause ``PGJOBS["QUEUES"]`` declares."""

from __future__ import annotations

from io import StringIO
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

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


def test_the_commands_start_from_a_pause_the_settings_declare_and_say_they_override_it() -> None:
    """Deployed before any worker restarted: the commands sync the settings first."""
    queues = {"mail": {"paused": True, "concurrency": 2}}
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues}):
        assert pgjobs("pause", "mail") == "Queue mail was paused already.\n"
        assert pgjobs("resume", "mail") == (
            "Queue mail resumed. PGJOBS['QUEUES'] pauses it: this overrides the settings until "
            "`pgjobs queue-limits mail --reset`.\n"
        )
        assert "mail  active  running=0 due=0  (changed by an operator)" in pgjobs("queues")
        assert pgjobs("queue-limits", "mail", "--reset") == (
            "Queue mail: paused, at most 2 running, as PGJOBS['QUEUES'] says: override ended "
            "(paused).\n"
        )
        assert Queue.objects.get(name="mail").paused
        # Resumed and paused again by hand: back to the settings, so no override remains.
        pgjobs("resume", "mail")
        assert pgjobs("pause", "mail") == "Queue mail paused.\n"
        assert not Queue.objects.get(name="mail").overridden


def test_a_pause_the_settings_do_not_declare_says_how_to_undo_it() -> None:
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": {"mail": {"concurrency": 2}}}):
        assert pgjobs("pause", "mail") == (
            "Queue mail paused. PGJOBS['QUEUES'] does not pause it: this overrides the settings "
            "until `pgjobs queue-limits mail --reset`.\n"
        )
        assert pgjobs("queue-limits", "mail") == (
            "Queue mail: paused, at most 2 running (changed by an operator).\n"
        )
        assert pgjobs("queue-limits", "mail", "--reset") == (
            "Queue mail: at most 2 running, as PGJOBS['QUEUES'] says: override ended (resumed).\n"
        )


def test_the_reset_it_names_quotes_the_queue_name() -> None:
    """Pasted into a shell, the hint must name that queue as one argument."""
    queues = {"mail $(id)": {"concurrency": 2}}
    with override_settings(PGJOBS={**settings.PGJOBS, "QUEUES": queues}):
        assert pgjobs("pause", "mail $(id)").endswith(
            "until `pgjobs queue-limits 'mail $(id)' --reset`.\n"
        )
