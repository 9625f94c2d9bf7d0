"""``manage.py pgjobs_worker``: runs the worker, closes what it opened to start, refuses bad
options."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_pgjobs import enqueue
from django_pgjobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_command_burst() -> None:
    enqueue("test.record", {"label": "cli worker"})
    out = StringIO()
    call_command("pgjobs_worker", "--burst", "--concurrency", "2", stdout=out)
    assert "1 completed" in out.getvalue()
    assert Job.objects.get().status == "completed"


def test_the_worker_command_does_not_keep_its_start_up_connection() -> None:
    """The migrations check opens the main thread's Django connection; the worker never uses
    it, so it must not sit idle for the life of the process (max_connections is finite)."""
    from django.db import connection

    enqueue("test.record", {"label": "cli worker"})
    assert connection.connection is not None
    call_command("pgjobs_worker", "--burst", stdout=StringIO())
    assert connection.connection is None
    assert Job.objects.get().status == "completed"


def test_worker_command_rejects_bad_options() -> None:
    with pytest.raises(CommandError, match="--concurrency"):
        call_command("pgjobs_worker", "--concurrency", "0")
